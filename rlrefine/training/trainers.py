"""What every training stage shares (SFT, GRPO/RLOO, RFT, pretraining): defaults for these machines, a wall-clock
budget, resuming from the newest complete checkpoint, and publishing a finished model in one rename."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from rlrefine.core.atomic import write_json, write_text
from rlrefine.core.protocols import UsageError

# Trainer settings every stage shares on these machines: no bf16, no checkpointing of activations (tiny
# models), no trackers, one checkpoint kept; use_cpu so that several CPU processes form one gloo group.
TRAINER_DEFAULTS = {
    "save_total_limit": 1,
    "bf16": False,
    "activation_checkpointing": False,
    "report_to": "none",
    "use_cpu": not torch.cuda.is_available(),
}


def score_labelled_tokens_only() -> bool:
    """Make TRL's fused LM head score only the positions that have a label, on a CPU as it does on CUDA.

    TRL 1.16 computes the per-token log-probabilities of SFT, GRPO and RLOO in vocabulary chunks
    (``ChunkedLogProbFunction``), and off CUDA/XPU it scores every position, prompt and padding included, so that
    Neuron's tile shapes stay fixed. On a CPU nothing recompiles, and for a real model that is the step's largest
    cost: SmolLM2-135M's 49k-token head over a 130-token prompt to train a 25-token answer was 48 % of an SFT step
    (README, Numbers). The loss and its gradient are the same (``tests/test_sft.py``); applied once, when this
    module is imported, before any trainer exists. False when TRL no longer has the hook (then nothing changes)."""
    import trl.trainer.utils as trl_utils

    on_cuda = getattr(trl_utils, "_use_triton", None)
    if on_cuda is None or getattr(on_cuda, "rlrefine", False):
        return on_cuda is not None

    def compact(device: torch.device) -> bool:
        return device.type == "cpu" or on_cuda(device)

    compact.rlrefine = True
    trl_utils._use_triton = compact
    return True


score_labelled_tokens_only()


class TimeBudget(TrainerCallback, ExportableState):
    """Stop training after a wall-clock budget: equal-time comparisons and hard limits on slow machines.

    The budget holds across kills: the seconds spent up to a checkpoint are saved in it (``trainer_state.json``) and
    a run resumed from it starts with them spent. Time after the last checkpoint is lost with the work it did."""

    def __init__(self, minutes: float | None = None) -> None:
        self.minutes, self.spent, self.began = minutes, 0.0, None

    def seconds(self) -> float:
        """Training seconds so far, earlier launches included."""
        return self.spent + (0.0 if self.began is None else time.monotonic() - self.began)

    def state(self) -> dict:
        return {"args": {"minutes": self.minutes}, "attributes": {"spent": self.seconds()}}

    def on_train_begin(self, args, state, control, **kwargs):
        saved = state.stateful_callbacks.get(type(self).__name__)  # a resumed run's state is its checkpoint's
        self.spent = float(saved.get("attributes", {}).get("spent", 0.0)) if isinstance(saved, dict) else 0.0
        self.began = time.monotonic()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.minutes is not None and self.seconds() > 60 * self.minutes:
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


def built_once(folder: Path, build: Callable[[], object]):
    """A dataset built by the main process only and shared through ``folder``: with several processes the teacher
    is asked and the SD-R filter solver called once per row, not once per process, and every process trains on the
    same set. The others wait for it on the file system, not at a collective (whose timeout a teacher behind a
    server can outlast). A killed run finds the set it already built."""
    from datasets import load_from_disk

    done = folder / "built"
    if PartialState().is_main_process and not done.exists():
        staging = folder.with_name(folder.name + ".staging")
        shutil.rmtree(staging, ignore_errors=True)
        build().save_to_disk(str(staging))
        (staging / "built").touch()
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    while not done.exists():
        time.sleep(0.5)
    return load_from_disk(str(folder))


def train_dtype(model_args) -> str:
    """The dtype the policy is loaded and trained in: TRL's ``ModelConfig.dtype`` when set (the same for SFT, RL and
    RFT), else float32 (the tiny world models, and any CPU run)."""
    dtype = getattr(model_args, "dtype", None)
    return dtype if dtype not in (None, "auto") else "float32"


def prepare_output(out: Path, overwrite: bool) -> Path:
    """The work folder for checkpoints; refuse to touch a finished model unless ``overwrite``."""
    work = out.with_name(out.name + ".work")
    if (out / "config.json").exists() and not overwrite:
        raise UsageError(f"{out} already holds a model; pass --overwrite to replace it")
    if overwrite and work.exists() and PartialState().is_main_process:
        shutil.rmtree(work)
    return work


def save_final(trainer, folder: Path) -> Path:
    """The trained model as a plain folder; every process must call it. Under ZeRO-3 or FSDP the weights are
    partitioned and TRL's ``save_model`` gathers them (a collective); a LoRA model is saved as its adapter and merged
    into its base model on the main process, from the files, where the weights are whole: a plain model that loads
    anywhere by path."""
    trainer.save_model(str(folder))
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(folder)
        if (folder / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            dtype = trainer.accelerator.unwrap_model(trainer.model).dtype
            merged = AutoPeftModelForCausalLM.from_pretrained(str(folder), dtype=dtype).merge_and_unload()
            for adapter in folder.glob("adapter_*"):
                adapter.unlink()
            merged.save_pretrained(folder)
        logs = Path(trainer.args.output_dir) / "runs"  # report_to tensorboard writes here, in the work folder
        if logs.is_dir():  # that folder is deleted once the model is published: keep the logs with the model
            shutil.copytree(logs, folder / "runs")
    trainer.accelerator.wait_for_everyone()
    return folder


def publish(model: str | Path, out: Path, card: str, extra: dict | None = None, facts: str = "eval.json") -> None:
    """Copy a saved model folder next to ``out`` and swap it in with renames: never a half-written model, and the old
    one stays until the new one is in place. ``extra`` goes to ``facts``. The main process's alone."""
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(model, staging)
    write_text(staging / "README.md", card)
    if extra:
        write_json(staging / facts, extra)
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)  # left by a run killed mid-swap
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
