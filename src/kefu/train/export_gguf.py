"""Write a merged qwen2/llama model as a GGUF file (F32 or F16 tensors) with its tokenizer, plus an Ollama Modelfile.

The file follows llama.cpp's conventions (tensor names, hyper-parameter keys, gpt2-style byte-level BPE tokenizer
metadata, llama's rotary q/k permutation) so that llama.cpp/Ollama and transformers' GGUF loader both read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kefu.answer.templates import TEMPLATES
from kefu.errors import KefuError
from kefu.io import write_text

ARCHS = ("qwen2", "llama")
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


def _arch(model: Any) -> Any:
    import gguf

    model_type = model.config.model_type
    if model_type not in ARCHS:
        raise KefuError(f"export gguf: architecture '{model_type}' is not supported; supported: {', '.join(ARCHS)}")
    return gguf.MODEL_ARCH.QWEN2 if model_type == "qwen2" else gguf.MODEL_ARCH.LLAMA


def _rope_theta(cfg: Any) -> float:
    params = getattr(cfg, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))


def _add_hparams(writer: Any, cfg: Any, n_vocab: int, f16: bool) -> None:
    import gguf

    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(_rope_theta(cfg))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)


def _pre_tokenizer(backend: dict[str, Any]) -> str:
    """llama.cpp's name for how text is split before BPE, recognised from the split regex."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    text = json.dumps(backend.get("pre_tokenizer"))
    for name in ("qwen2", "llama-bpe"):
        if json.dumps(GGUF_PRE_TOKENIZER_SPLITS[name])[1:-1] in text:
            return name
    return "gpt2"


def _merges(backend: dict[str, Any]) -> list[str]:
    return [m if isinstance(m, str) else " ".join(m) for m in backend["model"].get("merges", [])]


def _vocab(tok: Any, n_vocab: int) -> tuple[list[str], list[int]]:
    """Tokens by id with their llama.cpp types; rows the embedding has beyond the tokenizer become [PADn]."""
    id_to_token = {i: t for t, i in tok.get_vocab().items()}
    added = tok.added_tokens_decoder
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in id_to_token:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
            continue
        tokens.append(id_to_token[i])
        if i in added:
            types.append(TOKEN_CONTROL if added[i].special else TOKEN_USER_DEFINED)
        else:
            types.append(TOKEN_NORMAL)
    return tokens, types


def _add_tokenizer(writer: Any, tok: Any, n_vocab: int) -> None:
    backend = json.loads(tok.backend_tokenizer.to_str())
    if backend["model"]["type"] != "BPE" or "ByteLevel" not in json.dumps(backend.get("pre_tokenizer")):
        raise KefuError("export gguf: only byte-level BPE tokenizers (Qwen, Llama 3 style) can be written")
    tokens, types = _vocab(tok, n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(backend))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(_merges(backend))
    for name, add in (
        ("bos", writer.add_bos_token_id),
        ("eos", writer.add_eos_token_id),
        ("pad", writer.add_pad_token_id),
    ):
        token_id = getattr(tok, f"{name}_token_id")
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(False)  # chat templates write their own BOS where the family wants one
    template = tok.chat_template if isinstance(tok.chat_template, str) else None
    if template:
        writer.add_chat_template(template)


def _permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """transformers' llama keeps rotary halves split; llama.cpp wants them interleaved (its converter does this)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensors(model: Any, arch: Any) -> dict[str, np.ndarray]:
    import gguf

    cfg = model.config
    names = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    out: dict[str, np.ndarray] = {}
    for hf_name, t in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # a missing output.weight is how GGUF says the embedding is reused
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise KefuError(f"export gguf: no GGUF name for tensor '{hf_name}' ({cfg.model_type})")
        w = t.detach().float().cpu().numpy()
        if cfg.model_type == "llama" and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = cfg.num_attention_heads if "q_proj" in hf_name else cfg.num_key_value_heads
            w = _permute_rope(w, heads)
        out[name] = w
    return out


def write_gguf(model: Any, tok: Any, dest: Path, f16: bool = False) -> Path:
    """Write `model` (a plain, merged transformers model) and `tok` to `dest` as GGUF."""
    import gguf

    arch = _arch(model)
    n_vocab = model.get_input_embeddings().num_embeddings
    writer = gguf.GGUFWriter(str(dest), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(Path(str(model.config.name_or_path or "kefu")).name or "kefu")
    _add_hparams(writer, model.config, n_vocab, f16)
    _add_tokenizer(writer, tok, n_vocab)
    for name, w in _tensors(model, arch).items():
        # llama.cpp keeps 1-D tensors (norms, biases) in F32 even in an F16 file.
        writer.add_tensor(name, w.astype(np.float16) if f16 and w.ndim > 1 else w.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()
    return dest


# Ollama templates (Go text/template) for each chat family, mirroring templates.py.
_OLLAMA = {
    "<|im_end|>": (
        "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        '{{- range .Messages }}{{- if ne .Role "system" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
        "{{ end }}{{- end }}<|im_start|>assistant\n"
    ),
    "<|eot_id|>": (
        "<|begin_of_text|>{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>"
        '{{- end }}{{- range .Messages }}{{- if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>'
        "\n\n{{ .Content }}<|eot_id|>{{- end }}{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "<end_of_turn>": (
        '<bos>{{- range $i, $m := .Messages }}{{- if eq $m.Role "user" }}<start_of_turn>user\n'
        "{{- if and (eq $i 0) $.System }}{{ $.System }}\n\n{{ end }}{{ $m.Content }}<end_of_turn>\n"
        '{{- else if eq $m.Role "assistant" }}<start_of_turn>model\n{{ $m.Content }}<end_of_turn>\n'
        "{{- end }}{{- end }}<start_of_turn>model\n"
    ),
    "<｜end▁of▁sentence｜>": (
        '<｜begin▁of▁sentence｜>{{ .System }}{{- range .Messages }}{{- if eq .Role "user" }}<｜User｜>{{ .Content }}'
        '{{- else if eq .Role "assistant" }}<｜Assistant｜>{{ .Content }}<｜end▁of▁sentence｜>{{- end }}{{- end }}'
        "<｜Assistant｜>"
    ),
}


def modelfile_text(tok: Any, system: str | None = None) -> str:
    """An Ollama Modelfile for model.gguf next to it: the chat template, stop strings and the persona prompt."""
    from kefu.answer.templates import stop_strings

    template_text = tok.chat_template if isinstance(tok.chat_template, str) else ""
    marker = next((t.eos for t in TEMPLATES.values() if t.eos in template_text), "<|im_end|>")
    lines = ["FROM ./model.gguf", f'TEMPLATE """{_OLLAMA[marker]}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stop_strings(tok)]
    lines.append("PARAMETER temperature 0.3")
    return "\n".join(lines) + "\n"


def export_gguf(model: Any, tok: Any, out_dir: Path, system: str | None = None, f16: bool = False) -> Path:
    """out_dir/model.gguf + out_dir/Modelfile; returns the GGUF path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = write_gguf(model, tok, out_dir / "model.gguf", f16=f16)
    write_text(out_dir / "Modelfile", modelfile_text(tok, system))
    return path
