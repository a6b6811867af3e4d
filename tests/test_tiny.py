from pathlib import Path


def test_tiny_model_generates_and_has_chat_template(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "你好"}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if not hasattr(ids, "shape") else ids
    out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 5 or out[0, -1].item() == tok.eos_token_id
    assert "<|im_start|>assistant" in tok.decode(ids[0])
