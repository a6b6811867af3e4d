"""Preference tuning (DPO) recipe: the SFT adapter + `<data.output_dir>/dpo.jsonl` -> a better-behaved adapter.

Read `run_dpo` top to bottom: load data, load the model with the SFT adapter, train with TRL's DPOTrainer, save.
The reference policy is the SFT adapter itself: TRL keeps a frozen copy of the (small) adapter weights next to the
trained one on the same base, so there is no second copy of the model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import set_seed

from kefu.config import KefuConfig
from kefu.data.schema import Conversation, Preference, Turn
from kefu.errors import KefuError
from kefu.train import common, distributed
from kefu.train.tokenize import Record, encode_all, to_messages

log = logging.getLogger("kefu.train")
# TRL's per-step metrics kept in train_report.json and printed by the CLI.
REWARD_KEYS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")


def run_dpo(cfg: KefuConfig, *, resume: bool = False) -> common.TrainResult:
    """Continue the SFT adapter with DPO on dpo.jsonl; write to train.dpo_output_dir."""
    from trl import DPOConfig, DPOTrainer

    cfg = distributed.init(cfg)  # under torchrun/accelerate: this rank's device and the process group
    t = cfg.train
    if t.method == "full":
        raise KefuError("train.method: full is not supported for DPO; it trains the SFT LoRA adapter (method: lora)")
    run_dir = cfg.resolve(t.dpo_output_dir)
    checkpoint = common.prepare_run_dir(run_dir, resume=resume)
    set_seed(t.seed)

    # 1. data
    rows = common.read_prepared(cfg, "dpo.jsonl", Preference)

    # 2. model: base + the SFT adapter, trainable
    model, tokenizer = common.load_for_training(cfg, sft_adapter(cfg))
    trainable, total = common.count_params(model)
    log.info("DPO on %s of %s parameters", f"{trainable:,}", f"{total:,}")

    # 3. check lengths like SFT does (one clear error), then hand TRL conversational rows
    system = common.default_system(cfg)
    check_lengths(tokenizer, rows, cfg, system)
    dataset = to_dataset(rows, system, cot=t.cot)

    # 4. train
    args = common.training_args(
        cfg, run_dir, has_eval=False, cls=DPOConfig,
        beta=t.dpo_beta, loss_type=[t.dpo_loss], max_length=t.max_seq_len, learning_rate=t.dpo_lr,
    )  # fmt: skip
    trainer = DPOTrainer(
        model=model,
        ref_model=None,  # with a PeftModel TRL uses the frozen adapter copy: no second model in memory
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=common.callbacks(cfg, run_dir, "dpo", extra_keys=REWARD_KEYS),
    )
    report = common.fit(trainer, checkpoint)

    # 5. save the adapter with its tokenizer and config
    output = common.save_outputs(trainer, tokenizer, cfg, run_dir)
    return common.result("dpo", run_dir, output, report)


def sft_adapter(cfg: KefuConfig) -> str:
    """train.sft_adapter, or the adapter the SFT stage wrote into train.output_dir."""
    path = cfg.train.sft_adapter or str(Path(cfg.train.output_dir) / "adapter")
    if not (cfg.resolve(path) / "adapter_config.json").is_file():
        raise KefuError(
            f"DPO starts from the SFT adapter, but {cfg.resolve(path)} holds none: run `kefu train --stage sft` "
            "first, or set train.sft_adapter"
        )
    return path


def check_lengths(tokenizer: Any, rows: list[tuple[Preference, str]], cfg: KefuConfig, system: str) -> None:
    """Both prompt+chosen and prompt+rejected must fit train.max_seq_len (TRL would silently truncate them)."""
    records = [
        Record(Conversation(system=pref.system, turns=[*pref.prompt, Turn(role="assistant", content=answer)]), where)
        for pref, where in rows
        for answer in (pref.chosen, pref.rejected)
    ]
    t = cfg.train
    encode_all(tokenizer, records, system=system, cot=t.cot, max_len=t.max_seq_len, template=cfg.model.template)


def to_dataset(rows: list[tuple[Preference, str]], system: str, *, cot: bool) -> Any:
    """TRL's conversational preference format: prompt messages, chosen and rejected assistant messages."""
    from datasets import Dataset

    def prompt(pref: Preference) -> list[dict[str, str]]:
        conv = Conversation(system=pref.system, turns=pref.prompt)
        return to_messages(conv, system=pref.system or system, cot=cot)

    return Dataset.from_list(
        [
            {
                "prompt": prompt(pref),
                "chosen": [{"role": "assistant", "content": pref.chosen}],
                "rejected": [{"role": "assistant", "content": pref.rejected}],
            }
            for pref, _ in rows
        ]
    )
