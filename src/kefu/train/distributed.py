"""Data-parallel training under a launcher (torchrun, `accelerate launch`, deepspeed): kefu's side of it.

kefu does not distribute anything itself. The launcher starts one process per GPU (or CPU worker) and tells each
its place through the standard variables WORLD_SIZE, RANK and LOCAL_RANK; transformers' Trainer (through
accelerate) then wraps the model in DDP, FSDP2 (`fully_shard`) or DeepSpeed and gives each rank its share of every
global batch. What kefu adds here:

- `init`: the process group and each rank's device, before the model loads (else every rank loads onto GPU 0);
- `trainer_kwargs`: the TrainingArguments that pick DDP / FSDP2 / DeepSpeed from train.parallel and train.deepspeed;
- `barrier` / `World.is_main`: so only rank 0 writes the run folder (reports, final adapter, checkpoint seals).

Global batch = train.batch_size x train.grad_accum x WORLD_SIZE: keep it when changing the number of GPUs by
changing batch_size or grad_accum, and the loss curve stays the same (tests/train/test_distributed.py checks it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from kefu.config import KefuConfig
from kefu.errors import KefuError

log = logging.getLogger("kefu.train")
_TIMEOUT = timedelta(minutes=30)  # rank 0 alone gathers and writes the final weights: slow for large models


@dataclass(frozen=True)
class World:
    """This process's place among the launched ones (a plain `kefu train` is rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """Read from the launcher's protocol (torchrun, accelerate and deepspeed all set these variables)."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))


def init(cfg: KefuConfig) -> KefuConfig:
    """Check the combination, pin this rank's GPU and join the process group; returns cfg with the rank's device."""
    w = world()
    check(cfg, w)
    if not w.distributed:
        return cfg
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(w.local_rank)
        if cfg.model.device in ("auto", "cuda"):  # "cuda" alone would put every rank's copy on GPU 0
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"device": f"cuda:{w.local_rank}"})})
    if not dist.is_initialized():
        # On GPUs a gloo side too: FSDP's CPU offload and full-state-dict gathers move CPU tensors (as accelerate does)
        dist.init_process_group("cuda:nccl,cpu:gloo" if cuda else "gloo", timeout=_TIMEOUT)
    if w.is_main:
        log.info("data-parallel on %d processes (%s): global batch %d", w.size, describe(cfg), global_batch(cfg, w))
    return cfg


def check(cfg: KefuConfig, w: World) -> None:
    """Refuse combinations that cannot work, with the reason; say when kefu's fast path steps aside."""
    t = cfg.train
    if t.deepspeed and t.parallel == "fsdp":
        raise KefuError("train.deepspeed and train.parallel: fsdp both shard the model: set only one")
    if t.method == "qlora" and (t.parallel == "fsdp" or t.deepspeed):
        raise KefuError(
            "train.method: qlora trains data-parallel with train.parallel: ddp only (each GPU holds its own 4-bit "
            "copy); use method: lora or full with fsdp"
        )
    if w.distributed and t.parallel == "fsdp" and not torch.cuda.is_available():
        raise KefuError("train.parallel: fsdp shards across CUDA GPUs (accelerate has no CPU FSDP); use ddp on CPU")
    if t.deepspeed and not (cfg.resolve(t.deepspeed)).is_file():
        raise KefuError(f"train.deepspeed: {cfg.resolve(t.deepspeed)} not found (a DeepSpeed JSON config)")
    if t.deepspeed and not _has("deepspeed"):
        raise KefuError("train.deepspeed is set but DeepSpeed is not installed: `pip install deepspeed`")
    if w.distributed and t.backend == "fast" and torch.cuda.is_available():
        log.warning(
            "train.backend: fast is kefu's one-GPU path; with %d processes kefu trains each rank with the hf "
            "backend (transformers + %s) instead", w.size, describe(cfg)
        )  # fmt: skip


def describe(cfg: KefuConfig) -> str:
    t = cfg.train
    if t.deepspeed:
        return f"DeepSpeed {t.deepspeed}"
    return "FSDP2" if t.parallel == "fsdp" else "DDP"


def global_batch(cfg: KefuConfig, w: World | None = None) -> int:
    return cfg.train.batch_size * cfg.train.grad_accum * (w or world()).size


def uses_fast_path(cfg: KefuConfig) -> bool:
    """Whether kefu's fused one-GPU path may train this run (one process, no sharding)."""
    t = cfg.train
    return not world().distributed and t.parallel == "ddp" and not t.deepspeed


def trainer_kwargs(cfg: KefuConfig) -> dict[str, Any]:
    """TrainingArguments fields for DDP / FSDP2 / DeepSpeed; empty for a plain one-process DDP-mode run."""
    t, w = cfg.train, world()
    kw: dict[str, Any] = {}
    if w.distributed and not torch.cuda.is_available():
        # accelerate makes a CPU run distributed (gloo) only when told it runs on CPU; otherwise every rank
        # trains alone on all the data and writes the same folder.
        kw |= {"use_cpu": True, "ddp_backend": "gloo"}
    if w.distributed:
        kw["ddp_find_unused_parameters"] = False  # every trainable weight gets a gradient in a causal LM
        kw["ddp_timeout"] = int(_TIMEOUT.total_seconds())
    if t.parallel == "fsdp":
        kw |= fsdp_kwargs(cfg)
    if t.deepspeed:
        kw["deepspeed"] = str(cfg.resolve(t.deepspeed))
    return kw


def fsdp_kwargs(cfg: KefuConfig) -> dict[str, Any]:
    """FSDP2: every decoder layer its own `fully_shard` unit (the model's _no_split_modules), checkpoints sharded."""
    t = cfg.train
    fsdp_config = {
        "version": 2,
        "reshard_after_forward": True,
        "state_dict_type": "SHARDED_STATE_DICT",  # each rank writes its own shard: no gather on rank 0 per save
        # FSDP's own recomputation per layer; transformers' would all-gather the layer's weights a second time.
        "activation_checkpointing": t.gradient_checkpointing,
        "cpu_offload": t.fsdp_cpu_offload,
    }
    return {"fsdp": True, "fsdp_config": fsdp_config}


def loss_scale(args: Any) -> int:
    """Factor on a loss normalised by the tokens of all ranks (DDP averages gradients over ranks, so x world size).

    transformers applies it in Trainer.compute_loss; a Trainer that computes its own loss applies it itself.
    """
    if getattr(args, "average_tokens_across_devices", False) and args.world_size > 1:
        return int(args.world_size)
    return 1


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
