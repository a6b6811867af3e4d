"""kefu's fast training path against its references: torch CE, per-document attention, transformers + peft.

CPU tests run in CI; the CUDA ones (Triton kernels, varlen attention, offloading) run where a GPU is present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from kefu.train.fast import kernels as K
from kefu.train.fast import patch_model, unpatch_model, unsupported_reason
from kefu.train.fast.attention import IGNORE, attention, attention_reference, bucket_tokens, bucketed, flatten
from kefu.train.fast.loss import linear_cross_entropy

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def lora_model(path: Path, dtype: torch.dtype = torch.float32, device: str = "cpu", dropout: float = 0.0) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)  # type: ignore[arg-type]
    torch.manual_seed(1)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=TARGETS))
    with torch.no_grad():  # B starts at zero, which would make every A gradient zero and hide errors
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.05)
    return model


def loss_and_grads(model: Any, batch: dict[str, torch.Tensor]) -> tuple[float, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return loss.item(), torch.cat([p.grad.float().flatten() for p in model.parameters() if p.requires_grad])


def padded_batch(vocab: int, device: str = "cpu") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (3, 24), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0
    mask[2, 9:] = 0
    labels = ids.masked_fill(mask == 0, IGNORE)
    labels[:, :5] = IGNORE  # a prompt without loss
    return {k: v.to(device) for k, v in dict(input_ids=ids, attention_mask=mask, labels=labels).items()}


# ----------------------------------------------------------------------------- loss
def run_now(body: Any, *inputs: torch.Tensor) -> list[torch.Tensor]:
    """The runner CUDA graphs replace: the body, called directly (what a graph's first, eager, pass does)."""
    return list(body(*inputs))


@pytest.mark.parametrize("graphed", [None, run_now], ids=["selected-rows", "every-row"])
@pytest.mark.parametrize("normalizer", [None, 50.0])
def test_chunked_linear_ce_matches_torch(normalizer: float | None, graphed: Any) -> None:
    """Both forms: the eager one multiplies only rows with a target; the one CUDA graphs run multiplies every row
    and zeroes the ignored ones (shapes independent of the labels)."""
    torch.manual_seed(0)
    h = torch.randn(37, 16, requires_grad=True)
    w = torch.randn(101, 16)
    t = torch.randint(0, 101, (37,))
    t[::4] = IGNORE
    loss = linear_cross_entropy(h, w, t, normalizer, rows_per_chunk=8, graphed=graphed)
    loss.backward()
    h2 = h.detach().clone().requires_grad_()
    ref = F.cross_entropy(h2 @ w.t(), t, ignore_index=IGNORE, reduction="sum") / (
        normalizer or int((t != IGNORE).sum())
    )
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-5)
    assert h.grad is not None and h2.grad is not None
    assert torch.allclose(h.grad, h2.grad, atol=1e-6)


# ----------------------------------------------------------------------------- attention
def test_packed_attention_equals_separate_sequences() -> None:
    torch.manual_seed(0)
    lengths = [5, 11, 3]
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    stream = flatten(torch.zeros(1, sum(lengths), dtype=torch.long), None, None, pos)
    assert stream.lengths == lengths and stream.cu_seqlens.tolist() == [0, 5, 16, 19]
    q, k, v = torch.randn(19, 4, 8), torch.randn(19, 2, 8), torch.randn(19, 2, 8)
    out = attention_reference(q, k, v, stream)
    start = 0
    for n in lengths:  # each document alone, with no knowledge of the others
        qs, ks, vs = q[start : start + n], k[start : start + n], v[start : start + n]
        scores = torch.einsum("thd,shd->hts", qs, ks.repeat_interleave(2, 1)) / 8**0.5
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        alone = torch.einsum("hts,shd->thd", scores.softmax(-1), vs.repeat_interleave(2, 1))
        assert torch.allclose(out[start : start + n], alone, atol=1e-5)
        start += n


def test_flatten_drops_padding_and_ends_documents() -> None:
    ids = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    mask = (ids != 0).long()
    s = flatten(ids, ids.clone(), mask, None)
    assert s.ids.tolist() == [1, 2, 3, 4, 5] and s.positions.tolist() == [0, 1, 2, 0, 1]
    assert s.targets().tolist() == [2, 3, IGNORE, 5, IGNORE]


def packed_stream(lengths: list[int], device: str = "cpu") -> Any:
    pos = torch.cat([torch.arange(n) for n in lengths])[None].to(device)
    ids = torch.arange(sum(lengths), device=device)[None]
    return flatten(ids, ids.clone(), None, pos)


def test_bucketed_stream_pads_to_a_recurring_shape() -> None:
    """Packed batches of similar size share one key (so CUDA graphs replay), the padding is a few percent and
    attends only to itself, the real tokens keep their targets and attention outputs."""
    a, key_a = bucketed(packed_stream([300, 250, 41, 1000, 7]))
    _, key_b = bucketed(packed_stream([600, 300, 250, 200, 180, 30]))
    assert key_a == key_b == ("packed", 1600, 8, 1024)
    assert a.labels is not None
    assert a.ids.shape[0] == a.positions.shape[0] == a.labels.shape[0] == a.cu_seqlens[-1] == 1600
    assert a.lengths[:5] == [300, 250, 41, 1000, 7] and a.lengths[-2:] == [0, 0]  # empty documents at the end
    assert all(bucket_tokens(n) - n <= n / 16 for n in range(1024, 40000, 37))
    real = packed_stream([300, 250, 41, 1000, 7])
    assert torch.equal(a.targets()[:1598], real.targets()) and bool((a.targets()[1598:] == IGNORE).all())
    q, k, v = torch.randn(1600, 4, 8), torch.randn(1600, 2, 8), torch.randn(1600, 2, 8)
    out = attention_reference(q, k, v, a)
    assert torch.allclose(out[:1598], attention_reference(q[:1598], k[:1598], v[:1598], real), atol=1e-6)


def test_bucketed_packed_row_trains_like_unbucketed(tiny_model_dir: Path) -> None:
    from kefu.train.fast import FastOptions

    model = lora_model(tiny_model_dir)
    lengths = [9, 23, 5, 14]
    ids = torch.randint(3, model.config.vocab_size, (1, sum(lengths)), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[0, [0, 9, 32, 37]] = IGNORE  # each sample's first token predicts nothing across the boundary
    batch = dict(input_ids=ids, labels=labels, position_ids=torch.cat([torch.arange(n) for n in lengths])[None])
    patch_model(model, FastOptions(bucket_packed=False))
    loss_ref, g_ref = loss_and_grads(model, batch)
    unpatch_model(model)
    patch_model(model, FastOptions(bucket_packed=True))
    loss, g = loss_and_grads(model, batch)
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    assert torch.allclose(g, g_ref, atol=1e-6)


# ----------------------------------------------------------------------------- whole model vs transformers + peft
@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_patched_model_matches_peft(arch: str, tiny_model_dir: Path, tiny_llama_dir: Path) -> None:
    model = lora_model(tiny_model_dir if arch == "qwen2" else tiny_llama_dir)
    batch = padded_batch(model.config.vocab_size)
    loss_ref, g_ref = loss_and_grads(model, batch)
    patch_model(model)
    loss_fast, g_fast = loss_and_grads(model, batch)
    unpatch_model(model)
    loss_back, _ = loss_and_grads(model, batch)
    assert abs(loss_fast - loss_ref) < 1e-4 * abs(loss_ref)
    assert F.cosine_similarity(g_ref, g_fast, dim=0) > 0.9999
    assert torch.allclose(g_ref, g_fast, atol=1e-5)
    assert loss_back == pytest.approx(loss_ref, rel=1e-6)


def test_saved_gate_up_matches_recomputed(tiny_model_dir: Path) -> None:
    """Layers that keep their gate/up output (instead of recomputing it) give the same loss and gradients."""
    from kefu.train.fast import FastOptions

    model = lora_model(tiny_model_dir)
    batch = padded_batch(model.config.vocab_size)
    patch_model(model, FastOptions(keep_gate_up_layers=0, mlp_chunk_bytes=1024))
    loss_ref, g_ref = loss_and_grads(model, batch)
    unpatch_model(model)
    state = patch_model(model, FastOptions(keep_gate_up_layers=1, mlp_chunk_bytes=1024))
    assert [layer.keep_gate_up for layer in state.layers] == [True, False]  # on CPU the saved copy stays put
    loss, g = loss_and_grads(model, batch)
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    assert torch.allclose(g, g_ref, atol=1e-6)


def test_packed_row_matches_padded_batch(tiny_model_dir: Path) -> None:
    model = lora_model(tiny_model_dir)
    padded = padded_batch(model.config.vocab_size)
    patch_model(model)
    loss_pad, g_pad = loss_and_grads(model, padded)
    keep = padded["attention_mask"].bool()
    lengths = keep.sum(1).tolist()
    labels = [padded["labels"][i][keep[i]].clone() for i in range(3)]
    packed = dict(
        input_ids=padded["input_ids"][keep][None],
        labels=torch.cat(labels)[None],
        position_ids=torch.cat([torch.arange(n) for n in lengths])[None],
    )
    loss_pack, g_pack = loss_and_grads(model, packed)
    assert loss_pack == pytest.approx(loss_pad, rel=1e-5)
    assert torch.allclose(g_pad, g_pack, atol=1e-5)


def train(model: Any, batch: dict[str, torch.Tensor], steps: int) -> list[float]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def test_training_through_fast_path_lowers_loss_like_peft(tiny_model_dir: Path) -> None:
    import copy

    model = lora_model(tiny_model_dir)
    reference = copy.deepcopy(model)
    batch = padded_batch(model.config.vocab_size)
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    patch_model(model)
    losses = train(model, batch, 12)
    assert losses[-1] < losses[0] - 0.1
    assert losses == pytest.approx(train(reference, batch, 12), rel=1e-3)  # the same run as transformers + peft
    after = [p for p in model.parameters() if p.requires_grad]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
def test_lora_dropout_masks_are_redrawn_identically_on_recompute(tiny_model_dir: Path, device: str) -> None:
    """With dropout, backward recomputes each layer: the gradient must be that of the loss the forward computed
    (same masks), checked against a central difference along the gradient, every pass re-seeded alike."""
    model = lora_model(tiny_model_dir, dropout=0.3)
    with torch.no_grad():  # a strong adapter, so that other masks would give a clearly different gradient
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.5)
    # float64 on either device: in float32 the difference quotient is noise on CUDA (measured on an H200: 0.48 x the
    # gradient's squared norm without dropout), while float64 matched to 1e-3 with the offloaded recomputation.
    model = model.double().to(device).train()
    patch_model(model)
    batch = padded_batch(model.config.vocab_size, device)
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_at(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return model(**batch).loss

    loss_at(0).backward()
    grads = [p.grad.clone() for p in params]
    eps = 1e-4 / float(torch.cat([g.flatten() for g in grads]).norm())
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p.add_(g, alpha=eps)
        plus = loss_at(0).item()
        for p, g in zip(params, grads, strict=True):
            p.sub_(g, alpha=2 * eps)
        minus = loss_at(0).item()
        other_mask = loss_at(1).item()
    slope = (plus - minus) / (2 * eps)
    g2 = sum(float((g * g).sum()) for g in grads)
    # Other masks in the recomputation give an unrelated slope (seen: -0.02 x the gradient's squared norm).
    assert slope == pytest.approx(g2, rel=5e-3)
    assert abs(other_mask - minus) > 1e-2  # the masks do depend on the seed: dropout is on


def test_dropout_is_off_in_eval_mode(tiny_model_dir: Path) -> None:
    model = lora_model(tiny_model_dir, dropout=0.3).eval()
    batch = padded_batch(model.config.vocab_size)
    with torch.no_grad():
        reference = model(**batch).loss.item()
        patch_model(model)
        assert model(**batch).loss.item() == pytest.approx(reference, rel=1e-5)


def test_refuses_what_it_cannot_train(tiny_model_dir: Path) -> None:
    model = lora_model(tiny_model_dir)
    assert unsupported_reason(model) is None
    model.get_base_model().model.embed_tokens.weight.requires_grad_(True)
    assert "full fine-tuning" in (unsupported_reason(model) or "")
    with pytest.raises(ValueError, match="full fine-tuning"):
        patch_model(model)


# ----------------------------------------------------------------------------- CUDA: kernels, varlen, offload
def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@cuda
def test_cuda_kernels_match_references() -> None:
    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16
    x, w = torch.randn(300, 896, device=dev, dtype=bf), torch.randn(896, device=dev, dtype=bf)
    y, rstd = K.rmsnorm(x, w, 1e-6)
    y_ref, rstd_ref = K.rmsnorm(x.cpu(), w.cpu(), 1e-6)
    assert rel(y.cpu(), y_ref) < 1e-2 and rel(rstd.cpu(), rstd_ref) < 1e-5
    dy, res = torch.randn_like(x), torch.randn_like(x)
    assert (
        rel(
            K.rmsnorm_backward(dy, x, rstd, w, res).cpu(),
            K.rmsnorm_backward(dy.cpu(), x.cpu(), rstd_ref, w.cpu(), res.cpu()),
        )
        < 1e-2
    )
    gu = torch.randn(300, 2 * 4864, device=dev, dtype=bf)
    out = torch.full((300, 4880), float("nan"), device=dev, dtype=bf)
    K.swiglu(gu, out[:, :4864])
    ref = torch.empty(300, 4864, dtype=bf)
    K.swiglu(gu.cpu(), ref)
    assert rel(out[:, :4864].cpu(), ref) < 1e-2
    da = torch.randn(300, 4864, device=dev, dtype=bf)
    assert rel(K.swiglu_backward_(gu.clone(), da).cpu(), K.swiglu_backward_(gu.cpu(), da.cpu())) < 1e-2
    logits = torch.randn(64, 151936, device=dev, dtype=bf) * 3
    t = torch.randint(0, 151936, (64,), device=dev)
    g = logits.clone()
    loss = K.cross_entropy_rows_(g, t, 0.25)
    lr = logits.float().requires_grad_()
    ref_loss = F.cross_entropy(lr, t, reduction="none")
    (ref_loss.sum() * 0.25).backward()
    assert rel(loss, ref_loss) < 1e-4 and rel(g, lr.grad) < 1e-2  # type: ignore[arg-type]


@cuda
@pytest.mark.parametrize("lengths", [[100, 37, 300, 1], [256, 256, 256], [100, 37, 300, 1, 90]])
@pytest.mark.parametrize("bucket", [False, True], ids=["as-is", "bucketed"])
def test_cuda_packed_attention_matches_reference(lengths: list[int], bucket: bool) -> None:
    """Bucketed: padding documents and empty ones at the end (flash varlen must skip those), a longest-document
    bound above the real longest."""
    torch.manual_seed(0)
    stream = packed_stream(lengths, "cuda")
    if bucket:
        stream, _ = bucketed(stream)
    q, k, v = (
        torch.randn(len(stream.ids), h, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for h in (14, 2, 2)
    )
    go = torch.randn_like(q)
    out = attention(q, k, v, stream)
    grads = torch.autograd.grad(out, (q, k, v), go)
    ref = attention_reference(q, k, v, stream)
    grads_ref = torch.autograd.grad(ref, (q, k, v), go)
    assert rel(out, ref) < 2e-2
    assert all(rel(g, r) < 2e-2 for g, r in zip(grads, grads_ref, strict=True))


@cuda
def test_cuda_model_matches_peft_in_bf16(tiny_model_dir: Path) -> None:
    model = lora_model(tiny_model_dir, dtype=torch.bfloat16, device="cuda")
    batch = padded_batch(model.config.vocab_size, "cuda")
    loss_ref, g_ref = loss_and_grads(model, batch)
    patch_model(model)  # offloading on
    losses = [loss_and_grads(model, batch) for _ in range(2)]  # twice: pinned buffers reused
    for loss_fast, g_fast in losses:
        assert abs(loss_fast - loss_ref) < 1e-2 * loss_ref
        assert F.cosine_similarity(g_ref, g_fast, dim=0) > 0.99


@cuda
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_cuda_graph_replays_train_like_eager(dropout: float) -> None:
    """Graphs are captured on a layout's second pass and replayed after: training with them must follow the eager
    run step for step (the adapter changes every step, so replays must read the refreshed A and B; with dropout,
    replays must draw each pass's masks, the same in forward and recomputation), across interleaved layouts (full
    rows; padded rows with prompt tokens, bucketed like packed ones), with accumulation over micro-batches.
    Two layers of Qwen2.5-0.5B's shapes: the sizes graphs are switched on for."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from kefu.train.fast import FastOptions

    cfg = Qwen2Config(vocab_size=512, hidden_size=896, intermediate_size=4864, num_hidden_layers=2,
                      num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(3, 512, (2, 256), generator=g).cuda() for _ in range(3)]
    batches = [dict(input_ids=r, labels=r) for r in rows] + [padded_batch(512, "cuda")]

    def run(graphs: bool) -> tuple[list[float], torch.Tensor, Any]:
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(cfg).to(device="cuda", dtype=torch.bfloat16)
        lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules=TARGETS, init_lora_weights=False)
        model = get_peft_model(model, lora)
        state = patch_model(model.train(), FastOptions(cuda_graphs=graphs, bucket_packed=True))
        assert (state.graphs is not None) == graphs
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        losses = []
        for step in range(6):
            for b in (batches[step % 3], batches[3]):  # two micro-batches of different layouts
                loss = model(**b).loss
                loss.backward()
                losses.append(loss.item())
            opt.step()
            opt.zero_grad(set_to_none=True)
        params = torch.cat([p.detach().float().flatten() for p in model.parameters() if p.requires_grad])
        return losses, params, state

    eager_losses, eager_params, _ = run(False)
    graph_losses, graph_params, state = run(True)
    # Not bitwise: the eager loss multiplies only the rows with a target, the graphed one every row.
    assert graph_losses == pytest.approx(eager_losses, rel=5e-3)
    assert rel(graph_params, eager_params) < 1e-2
    # Both layers both ways per layout, and the loss of the full rows (the bucketed layout's runs eagerly).
    assert len(state.graphs._graphs) == 2 * 2 * 2 + 1
    assert state.graphs.pool_bytes() > 0


# ----------------------------------------------------------------------------- the Trainer seam (kefu train)
def test_sft_recipe_through_the_fast_trainer(tmp_path: Path, tiny_model_dir: Path) -> None:
    """run_sft's steps with the Trainer and collator the seam hands out (sft.pick_trainer takes them on CUDA)."""
    from transformers import TrainingArguments

    from kefu.config import load_config
    from kefu.train import common, sft
    from kefu.train.fast.trainer import FastTrainer, trainer_and_collator
    from tests.train.test_sft import make_project, sft_rows

    # kefu's default dropout: trained through the fast path too; train.cuda_graphs reaches the fast path's options.
    train = {"max_steps": 12, "lora_dropout": 0.05, "cuda_graphs": False}
    cfg = load_config(make_project(tmp_path, tiny_model_dir, sft=sft_rows(), train=train))
    model, tokenizer = common.load_for_training(cfg, None)
    model = common.attach_lora(model, cfg.train)
    rows = common.read_prepared(cfg, "sft.jsonl", sft.Conversation)
    train_set = sft.encode(tokenizer, rows, cfg, common.default_system(cfg))
    trainer_cls, collator = trainer_and_collator(cfg, model, tokenizer)
    assert trainer_cls is FastTrainer and hasattr(common_lm(model), "_kefu_fast")
    assert common_lm(model)._kefu_fast.options.cuda_graphs is False
    run_dir = cfg.resolve(cfg.train.output_dir)
    run_dir.mkdir(parents=True)
    trainer = trainer_cls(
        model=model,
        args=common.training_args(cfg, run_dir, has_eval=True, cls=TrainingArguments, remove_unused_columns=False),
        train_dataset=train_set,
        eval_dataset=train_set[:8],
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=common.callbacks(cfg, run_dir, "sft"),
    )
    report = common.fit(trainer, None)
    history = [e["loss"] for e in report["history"] if "loss" in e]
    assert len(history) == 12 and sum(history[-3:]) < sum(history[:3])
    assert report["final_eval_loss"] is not None  # evaluation ran through the fast forward too
    assert not hasattr(common_lm(model), "_kefu_fast")  # HF's forward is back after training
    assert (common.save_outputs(trainer, tokenizer, cfg, run_dir) / "adapter_model.safetensors").is_file()


def test_seam_falls_back_when_the_fast_path_cannot_train(tmp_path: Path, tiny_model_dir: Path) -> None:
    from kefu.config import load_config
    from kefu.train import common, trainers
    from kefu.train.fast.trainer import trainer_and_collator
    from tests.train.test_sft import make_project, sft_rows

    cfg = load_config(make_project(tmp_path, tiny_model_dir, sft=sft_rows(), train={"method": "full"}))
    model, tokenizer = common.load_for_training(cfg, None)
    model = common.attach_lora(model, cfg.train)
    trainer_cls, _ = trainer_and_collator(cfg, model, tokenizer)
    assert trainer_cls is trainers.AnswerLogitsTrainer  # what sft.pick_trainer picks without the fast path
    assert not hasattr(common_lm(model), "_kefu_fast")


def common_lm(model: Any) -> Any:
    from kefu.train.fast.patch import causal_lm

    return causal_lm(model)
