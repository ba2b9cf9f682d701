"""RFT (rejection-sampling fine-tuning): the honest baseline every RL claim needs.

Each round samples k decompositions per problem from the current student, keeps those that led the frozen
solver to the gold answer (the student-side SD-R), and fine-tunes on them with TRL's SFTTrainer. Same
solver, same data and the same wall-clock budget as the RL run it is compared with.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from trl import SFTConfig

from rlrefine.core.format import MAX_SUBQUESTIONS, decomposer_messages, parse

log = logging.getLogger(__name__)


@dataclass
class RFTConfig(SFTConfig):
    """TRL's ``SFTConfig`` for the fine-tuning rounds, plus RFT's own settings (as ``PPOConfig`` holds PPO's)."""

    rft_samples: int = field(default=8, metadata={"help": "RFT: decompositions sampled per problem"})
    rft_problems: int = field(
        default=250, metadata={"help": "RFT: problems sampled per round (small rounds: more of them fit a budget)"}
    )
    rft_rounds: int = field(default=3, metadata={"help": "RFT: sample -> filter -> SFT rounds"})
    max_completion_length: int = field(
        default=64, metadata={"help": "RFT: the longest decomposition sampled, in tokens (as GRPO's setting)"}
    )


def collect(
    model: Path | object,
    rows: list[dict],
    solver: str,
    k: int,
    seed: int,
    instruction: str | None = "",
    cap: int | None = MAX_SUBQUESTIONS,
    max_tokens: int = 64,
) -> tuple[list[dict], dict]:
    """Sample k decompositions of up to ``max_tokens`` per problem from ``model`` (a model folder, or a decomposer
    that samples); keep each distinct solver-correct one that ended on its own and is well formed with at most
    ``cap`` sub-questions (None: any number) as an SFT example."""
    from rlrefine.decomposers.model import from_folder
    from rlrefine.evaluation.evaluate import sample_and_solve

    if not callable(getattr(model, "sample", None)):
        model = from_folder(str(model), instruction=instruction, max_tokens=max_tokens)
    kept, seen, solved = [], set(), set()
    for row, gen, _, graded in sample_and_solve(model, rows, solver, k, seed):
        if gen.finished and graded["score"] == 1.0 and parse(gen.text, cap).valid:  # parsed again: the run's cap
            solved.add(row["id"])
            if (row["id"], gen.text) not in seen:
                seen.add((row["id"], gen.text))
                kept.append(
                    {
                        "prompt": decomposer_messages(row["context"], row["question"], instruction),
                        "completion": [{"role": "assistant", "content": gen.text}],
                    }
                )
    return kept, {"problems": len(rows), "pass_at_k": len(solved) / max(len(rows), 1), "kept": len(kept)}


def rft(args, sft_config: RFTConfig, start: Path, out: Path, dtype: str = "float32") -> Path:
    """``rft_rounds`` rounds of sample -> filter -> SFT, within ``args.rl_minutes`` if set.

    Each finished round is recorded in ``rl.work/rounds.json``; with ``--resume`` a killed run continues after the
    last finished round (same problems per round as an unbroken run; the finished rounds' time counts against
    ``rl_minutes``).
    """
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    from rlrefine.core.atomic import write_json
    from rlrefine.data import load_split
    from rlrefine.engines.models import load_tokenizer
    from rlrefine.training.settings import subquestion_cap
    from rlrefine.training.trainers import TimeBudget, publish

    rows = list(load_split(args.data, "train", args.train_limit, args.train_domain))
    rng = random.Random(sft_config.seed)
    work = out.with_name("rl.work")
    progress = work / "rounds.json"
    history = json.loads(progress.read_text()) if args.resume and progress.is_file() else []
    state = PartialState()
    if not history and state.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
    state.wait_for_everyone()
    current = work / f"round-{len(history) - 1}" / "model" if history else start
    for _ in history:  # draw the finished rounds' problems again, so later rounds get the same ones
        rng.sample(rows, min(sft_config.rft_problems, len(rows)))
    spent = sum(h.get("seconds", 0.0) for h in history)  # a resumed run has only what is left of its budget
    deadline = None if args.rl_minutes is None else time.monotonic() + 60 * args.rl_minutes - spent
    began = time.perf_counter()
    for round_ in range(len(history), sft_config.rft_rounds):
        round_began = time.perf_counter()
        if deadline is not None and time.monotonic() > deadline and current != start:
            break  # out of time; a first round always runs (as a trainer's first step does), so there is a model
        batch = rng.sample(rows, min(sft_config.rft_problems, len(rows)))
        kept, stats = collect(
            current,
            batch,
            args.train_solver,
            sft_config.rft_samples,
            sft_config.seed + round_,
            args.instruction,
            subquestion_cap(args.rewards),
            sft_config.max_completion_length,
        )
        if not kept:
            history.append({"round": round_, **stats})
            break
        sft_config.output_dir = str(work / f"round-{round_}")
        remaining = None if deadline is None else max((deadline - time.monotonic()) / 60, 0.01)
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(current, dtype=dtype),
            args=sft_config,
            train_dataset=Dataset.from_list(kept),
            processing_class=load_tokenizer(current),
            callbacks=[TimeBudget(remaining)],
        )
        trainer.train()
        current = work / f"round-{round_}" / "model"
        trainer.save_model(str(current))
        trainer.processing_class.save_pretrained(str(current))
        seconds = time.perf_counter() - round_began
        history.append({"round": round_, **stats, "steps": trainer.state.global_step, "seconds": seconds})
        if state.is_main_process:
            write_json(progress, history)  # written last: the round counts as finished only now
    if current == start:  # nothing the solver got right was sampled: the decomposer stays the SFT one, said so
        log.warning("RFT kept no decomposition (no solver-correct sample): the published model is the start model")
    facts = {"algorithm": "rft", "rounds": history, "rl_minutes": (spent + time.perf_counter() - began) / 60}
    card = (
        f"# rlrefine decomposer (rft)\n\nRejection-sampling fine-tuning from `{start}` against `{args.train_solver}`.\n"
    )
    if state.is_main_process:
        publish(current, out, card, {"training": facts})
        shutil.rmtree(work, ignore_errors=True)
    state.wait_for_everyone()
    return out
