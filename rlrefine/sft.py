"""``rlrefine sft``: distill a decomposer (SD-T, SD-R, oracle) or a solver (one-hop, SE-T, SE-A) with TRL.

TRL's own options pass straight through (``--learning_rate``, ``--max_steps``, ``--use_peft --lora_r 8``, ...).
The model starts from ``--model_name_or_path`` (default: the bundled tiny base model). Training writes
checkpoints to ``OUTPUT_DIR.work`` and resumes from them when rerun; the finished model (LoRA merged) replaces
``OUTPUT_DIR`` in one rename, with a model card and ``eval.json`` (validation accuracy).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import TrainerCallback

from rlrefine.atomic import write_json, write_text

# Trainer settings every stage shares on these machines: no bf16, no checkpointing of activations (tiny
# models), no trackers, one checkpoint kept; use_cpu so that several CPU processes form one gloo group.
TRAINER_DEFAULTS = {
    "save_total_limit": 1,
    "bf16": False,
    "activation_checkpointing": False,
    "report_to": "none",
    "use_cpu": not torch.cuda.is_available(),
}

# Defaults for the tiny world models; a config file or flags override any of them.
TINY_DEFAULTS = {
    **TRAINER_DEFAULTS,
    "model_name_or_path": "base",
    "output_dir": "runs/sft",
    "learning_rate": 1e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 30,
    "per_device_train_batch_size": 32,
    "max_steps": 600,
    "max_length": 256,
    "logging_steps": 25,
    "save_steps": 100,
    "dataloader_drop_last": True,
}


@dataclass
class SFTArgs:
    """What to distill; the rest of the flags are TRL's ``SFTConfig`` and ``ModelConfig``."""

    role: str = field(default="decomposer", metadata={"help": "decomposer or solver"})
    variant: str = field(
        default="sd-t", metadata={"help": "decomposer: sd-t, sd-r, oracle; solver: onehop, se-t, se-a"}
    )
    data: str = field(default="world")
    train_limit: int | None = field(default=None, metadata={"help": "use the first N training problems"})
    domain: str | None = field(default=None, metadata={"help": "train on this domain's problems only"})
    teacher: str = field(default="teacher", metadata={"help": "teacher decomposer spec"})
    instruction: str | None = field(
        default="", metadata={"help": "decomposer prompt's instruction: '' none (tiny models); null the paper's"}
    )
    filter_solver: str = field(default="hops=1", metadata={"help": "SD-R keeps what this solver answers right"})
    eval_solvers: list[str] = field(default_factory=lambda: ["hops=1", "hops=2"], metadata={"help": "for the card"})
    eval_limit: int = field(default=500, metadata={"help": "validation problems evaluated for the card (0: none)"})
    max_minutes: float | None = field(default=None, metadata={"help": "stop training after this wall-clock time"})
    overwrite: bool = field(default=False, metadata={"help": "replace a model already in output_dir"})


class TimeBudget(TrainerCallback):
    """Stop training after a wall-clock budget: equal-time comparisons and hard limits on slow machines."""

    def __init__(self, minutes: float | None) -> None:
        self.deadline = None if minutes is None else time.monotonic() + 60 * minutes

    def on_step_end(self, args, state, control, **kwargs):
        if self.deadline is not None and time.monotonic() > self.deadline:
            control.should_training_stop = True
        return control


def last_checkpoint(folder: Path) -> str | None:
    """The newest complete ``checkpoint-N`` in ``folder``: a killed run resumes from it.

    The Trainer writes trainer_state.json last, and not atomically, so a checkpoint counts only when that file
    parses: a run killed mid-save resumes from the one before.
    """
    found = [p for p in folder.glob("checkpoint-*") if _readable(p / "trainer_state.json")] if folder.is_dir() else []
    found.sort(key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return str(found[-1]) if found else None


def _readable(state: Path) -> bool:
    try:
        return isinstance(json.loads(state.read_text()), dict)
    except (OSError, ValueError):
        return False


def prepare_output(out: Path, overwrite: bool) -> Path:
    """The work folder for checkpoints; refuse to touch a finished model unless ``overwrite``."""
    from rlrefine.cli import UsageError

    work = out.with_name(out.name + ".work")
    if (out / "config.json").exists() and not overwrite:
        raise UsageError(f"{out} already holds a model; pass --overwrite to replace it")
    if overwrite and work.exists() and PartialState().is_main_process:
        shutil.rmtree(work)
    return work


def publish(trainer, out: Path, card: str, extra: dict | None = None) -> None:
    """Save the final model (a trainer's, or a saved model folder) next to ``out`` and swap it in with renames:
    never a half-written model."""
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    if isinstance(trainer, (str, Path)):
        shutil.copytree(trainer, staging)
    else:
        model = trainer.model
        if hasattr(model, "merge_and_unload"):  # LoRA: ship a plain model that loads anywhere by path
            model = model.merge_and_unload()
        model.save_pretrained(staging)
        trainer.processing_class.save_pretrained(staging)
    write_text(staging / "README.md", card)
    if extra:
        write_json(staging / "eval.json", extra)
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)  # left by a run killed mid-swap
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def train_sft(script: SFTArgs, training_args, model_args) -> Path:
    """Build the distillation data, train with TRL's SFTTrainer, publish the model with its card."""
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer, get_peft_config

    from rlrefine.data import load_split
    from rlrefine.distill import decomposer_dataset, solver_dataset
    from rlrefine.models import load_tokenizer, resolve

    out = Path(training_args.output_dir)
    work = prepare_output(out, script.overwrite)
    rows = list(load_split(script.data, "train", script.train_limit, script.domain))  # fails before any model
    if script.role == "decomposer":
        dataset = decomposer_dataset(rows, script.variant, script.teacher, script.filter_solver, script.instruction)
    elif script.role == "solver":
        dataset = solver_dataset(rows, script.variant, script.teacher)
    else:
        raise ValueError(f"unknown role {script.role!r}; valid: decomposer, solver")
    tokenizer = load_tokenizer(model_args.model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(resolve(model_args.model_name_or_path), dtype="float32")
    training_args.output_dir = str(work)
    start = time.perf_counter()
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[TimeBudget(script.max_minutes)],
    )
    resumed = last_checkpoint(work)
    result = trainer.train(resume_from_checkpoint=resumed)
    minutes = (time.perf_counter() - start) / 60
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h] or [result.training_loss]
    facts = {
        "role": script.role,
        "variant": script.variant,
        "data": script.data,
        "examples": len(dataset),
        "steps": trainer.state.global_step,
        "final_loss": losses[-1],
        "train_minutes": minutes,
        "start_model": model_args.model_name_or_path,
        "lora": bool(model_args.use_peft),
    }
    facts["resumed_from"] = resumed
    facts["log_history"] = trainer.state.log_history
    if trainer.accelerator.is_main_process:
        publish(trainer, out, model_card(facts, None))
        report = validation_report(out, script) if script.eval_limit else None
        write_text(out / "README.md", model_card(facts, report))
        write_json(out / "eval.json", {"training": facts, "validation": report})
        shutil.rmtree(work, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    print(
        f"saved {script.role} to {out}: {trainer.state.global_step} steps in {minutes:.1f} min, loss {losses[-1]:.4f}"
    )
    return out


def validation_report(out: Path, script: SFTArgs) -> dict | None:
    """Validation accuracy of the trained model in the pipeline, for its card (None: no validation split)."""
    from rlrefine.data import load_splits
    from rlrefine.evaluate import evaluate
    from rlrefine.models import ModelDecomposer

    splits = load_splits(script.data)
    if "validation" not in splits:  # never report on the test split from a training command
        print(f"{script.data} has no validation split: the model card carries no accuracy")
        return None
    validation = splits["validation"]
    rows = list(validation.select(range(min(script.eval_limit, len(validation)))))
    if script.role == "decomposer":
        student = ModelDecomposer(str(out), instruction=script.instruction)
        results = evaluate(rows, [student], script.eval_solvers, progress=False)
    else:
        results = evaluate(rows, ["oracle", script.teacher, "none"], [f"model:{out}"], progress=False)
    return {
        "n": len(rows),
        "cells": [
            {k: c[k] for k in ("decomposer", "solver", "accuracy", "mean_subquestions", "oracle_match") if k in c}
            for c in results["cells"]
        ],
    }


def model_card(facts: dict, report: dict | None) -> str:
    lines = [
        "---",
        "library_name: transformers",
        f"tags: [rlrefine, {facts['role']}, {facts['variant']}]",
        "---",
        f"# rlrefine {facts['role']} ({facts['variant']})",
        "",
        f"Distilled with TRL's SFTTrainer from `{facts['start_model']}` on {facts['examples']} `{facts['variant']}` "
        f"examples of `{facts['data']}`{' with LoRA (merged)' if facts['lora'] else ''}.",
        "",
        f"- steps: {facts['steps']}, final training loss {facts['final_loss']:.4f}, {facts['train_minutes']:.1f} min",
    ]
    if report:
        lines += [
            "",
            f"Validation ({report['n']} problems):",
            "",
            "| decomposer | solver | accuracy | sub-q | oracle match |",
            "|---|---|---|---|---|",
        ]
        for c in report["cells"]:
            match = c.get("oracle_match")
            lines.append(
                f"| {c['decomposer']} | {c['solver']} | {c['accuracy']:.3f} | {c['mean_subquestions']:.2f} | "
                f"{'' if match is None else f'{match:.3f}'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    from trl import ModelConfig, SFTConfig

    from rlrefine.cli import parse_config

    script, training_args, model_args = parse_config(
        [SFTArgs, SFTConfig, ModelConfig], argv, "rlrefine sft", TINY_DEFAULTS
    )
    return train_sft(script, training_args, model_args)
