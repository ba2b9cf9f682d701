"""``rlrefine sft``: distill a decomposer (SD-T, SD-R, oracle) or a solver (one-hop, SE-T, SE-A) with TRL.

TRL's own options pass straight through (``--learning_rate``, ``--max_steps``, ``--use_peft --lora_r 8``, ...).
The model starts from ``--model_name_or_path`` (default: the bundled tiny base model). Training writes
checkpoints to ``OUTPUT_DIR.work`` and resumes from them when rerun; the finished model (LoRA merged) replaces
``OUTPUT_DIR`` in one rename, with a model card and ``eval.json`` (validation accuracy).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlrefine.core.atomic import write_json, write_text
from rlrefine.core.protocols import UsageError
from rlrefine.core.tables import markdown_table
from rlrefine.training.settings import DataArgs, TeacherArgs
from rlrefine.training.trainers import (
    TRAINER_DEFAULTS,
    TimeBudget,
    built_once,
    last_checkpoint,
    prepare_output,
    publish,
    save_final,
    train_dtype,
)

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
class SFTArgs(TeacherArgs, DataArgs):
    """What to distill (the data and teacher concerns are the pipeline's own); the rest of the flags are TRL's
    ``SFTConfig`` and ``ModelConfig``."""

    train_domain: str | None = field(
        default=None, metadata={"help": "train on this domain's problems only", "aliases": ["--domain"]}
    )
    role: str = field(default="decomposer", metadata={"help": "decomposer or solver"})
    variant: str = field(
        default="sd-t", metadata={"help": "decomposer: sd-t, sd-r, oracle; solver: onehop, se-t, se-a"}
    )
    filter_solver: str = field(default="hops=1", metadata={"help": "SD-R keeps what this solver answers right"})
    rollout: str = field(
        default="static",
        metadata={"help": "decomposer: static (all sub-questions at once) or dynamic (dialogues with filter_solver)"},
    )
    eval_solvers: list[str] = field(default_factory=lambda: ["hops=1", "hops=2"], metadata={"help": "for the card"})
    eval_limit: int = field(default=500, metadata={"help": "validation problems evaluated for the card (0: none)"})
    max_minutes: float | None = field(default=None, metadata={"help": "stop training after this wall-clock time"})
    overwrite: bool = field(default=False, metadata={"help": "replace a model already in output_dir"})


def distillation_data(script: SFTArgs):
    """What SFT trains on, as a function that builds it: the rows are loaded (and checked) now, before any model."""
    from rlrefine.data import load_split
    from rlrefine.training.distill import decomposer_dataset, solver_dataset
    from rlrefine.training.settings import check_rollout

    rows = list(load_split(script.data, "train", script.train_limit, script.train_domain))
    if script.role == "decomposer":
        rollout = check_rollout(script.rollout)
        return lambda: decomposer_dataset(
            rows, script.variant, script.teacher, script.filter_solver, script.instruction, rollout
        )
    if script.role == "solver":
        return lambda: solver_dataset(rows, script.variant, script.teacher)
    raise UsageError(f"unknown role {script.role!r}; valid: decomposer, solver")


def train_sft(script: SFTArgs, training_args, model_args) -> Path:
    """Build the distillation data, train with TRL's SFTTrainer, publish the model with its card."""
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer, get_peft_config

    from rlrefine.engines.models import load_tokenizer, resolve

    out = Path(training_args.output_dir)
    work = prepare_output(out, script.overwrite)
    dataset = built_once(work / "data", distillation_data(script))  # one set, however many processes
    tokenizer = load_tokenizer(model_args.model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(resolve(model_args.model_name_or_path), dtype=train_dtype(model_args))
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
        "rollout": script.rollout,
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
    final = save_final(trainer, work / "final")  # every process: ZeRO-3 and FSDP gather the weights here
    if trainer.accelerator.is_main_process:
        publish(final, out, model_card(facts, None))
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
    from rlrefine.decomposers.model import from_folder
    from rlrefine.evaluation.evaluate import evaluate

    splits = load_splits(script.data)
    if "validation" not in splits:  # never report on the test split from a training command
        print(f"{script.data} has no validation split: the model card carries no accuracy")
        return None
    validation = splits["validation"]
    rows = list(validation.select(range(min(script.eval_limit, len(validation)))))
    if script.role == "decomposer":
        student = from_folder(str(out), instruction=script.instruction)
        results = evaluate(rows, [student], script.eval_solvers, progress=False, modes=[script.rollout])
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
        ]
        cells = [
            [c["decomposer"], c["solver"], f"{c['accuracy']:.3f}", f"{c['mean_subquestions']:.2f}"]
            + ["" if c.get("oracle_match") is None else f"{c['oracle_match']:.3f}"]
            for c in report["cells"]
        ]
        lines += markdown_table(["decomposer", "solver", "accuracy", "sub-q", "oracle match"], cells)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    from trl import ModelConfig, SFTConfig

    from rlrefine.core.settings import parse_config

    script, training_args, model_args = parse_config(
        [SFTArgs, SFTConfig, ModelConfig], argv, "rlrefine sft", TINY_DEFAULTS
    )
    return train_sft(script, training_args, model_args)
