"""Tiny randomly initialised causal LMs with a real BPE tokenizer, built in seconds and offline."""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "你好，请问有什么可以帮您？我是小禾，青禾生活馆的智能客服。",
    "七天无理由退货，签收后7天内可申请，商品需保持完好。",
    "订单已发货，顺丰快递通常48小时内送达。优惠券不可叠加使用。",
    "Hello! How can I help you today? Returns are accepted within 7 days.",
    "Your order ships within 48 hours. Coupons cannot be stacked.",
    "发票 退款 人工客服 物流 地址 修改 价格保护 破损 补发 0123456789",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def build_tokenizer(path: Path, vocab_size: int = 400):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(CORPUS * 20, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>", additional_special_tokens=SPECIALS[1:]
    )
    tok.chat_template = CHATML
    tok.save_pretrained(path)
    return tok


def build_tiny(path: Path, arch: str = "qwen2", hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A ~30k-parameter Qwen2 (tied embeddings) or Llama (untied) with its tokenizer saved to `path`."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    path.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(path)
    config_cls = {"qwen2": Qwen2Config, "llama": LlamaConfig}[arch]
    cfg = config_cls(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=arch == "qwen2",
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    return path


def build_tiny_qwen2(path: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    return build_tiny(path, "qwen2", hidden, layers, seed)


def build_tiny_llama(path: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A tiny Llama (for llama-architecture export paths) with the same tokenizer."""
    return build_tiny(path, "llama", hidden, layers, seed)
