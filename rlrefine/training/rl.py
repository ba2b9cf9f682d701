"""The RL stage: the decomposer is the policy, TRL's GRPO or RLOO trainer does the rest, and the reward plugins
named in the config (``rlrefine.core.registry``) score its completions, a frozen solver inside. RFT has its own module.

Every reward is wrapped once (``Watched``): its time counts toward the reward-overhead figure, a NaN or infinite
reward is counted, warned about and skipped (never silently averaged), a reward that raises names itself and the
step, and the wrapper keeps what TRL reads of the reward: its name and whether it is async. After a dialogue rollout
(``--rollout dynamic``, ``rlrefine.training.dialogue``) it hands the reward the dialogue's decomposition as the
completion: what the policy wrote, as a static decomposer would have written it (the sub-questions asked, in the
format, and a closing turn without one as written), and the policy's own tokens as its completion ids.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rlrefine.core import registry
from rlrefine.core.protocols import BackendError
from rlrefine.training.settings import PipelineArgs, UsageError

log = logging.getLogger(__name__)
SILENT_BATCHES = 3  # a reward that skips every sample this many batches in a row stops the run: no signal is left


def asked(kwargs: dict) -> dict:
    """TRL's reward arguments; after a dialogue, its decomposition and the policy's own tokens in place of the
    completion (the policy's and the solver's turns in one sequence), so no reward charges the policy for the
    solver's words."""
    if "decomposition" not in kwargs:
        return kwargs
    chat = bool(kwargs.get("completions")) and isinstance(kwargs["completions"][0], list)
    seen = [[{"role": "assistant", "content": d}] if chat else d for d in kwargs["decomposition"]]
    return {**kwargs, "completions": seen, "completion_ids": kwargs["policy_ids"]}


class Watched:
    """A reward function as TRL calls it, timed and checked. Picklable when the reward is."""

    def __init__(self, func: Callable, name: str) -> None:
        self.func, self.__name__ = func, name
        self.seconds, self.nonfinite, self.warned, self.silent = 0.0, 0, False, 0

    def __call__(self, *args, **kwargs) -> list[float | None]:
        start = time.perf_counter()
        try:
            out = self.func(*args, **asked(kwargs))
        except Exception as exc:
            raise self._failed(exc, kwargs) from exc
        finally:
            self.seconds += time.perf_counter() - start
        return self._checked(out, kwargs)

    def _failed(self, exc: Exception, kwargs: Mapping) -> RuntimeError:
        step = getattr(kwargs.get("trainer_state"), "global_step", "?")
        return RuntimeError(
            f"reward {self.__name__} failed at step {step}: {type(exc).__name__}: {exc} "
            "(fix it and rerun with --resume: training continues from the last checkpoint)"
        )

    def _checked(self, out: Sequence, kwargs: Mapping) -> list[float | None]:
        bad = [i for i, r in enumerate(out) if r is not None and not math.isfinite(r)]
        if bad:
            self.nonfinite += len(bad)
            if not self.warned:
                from accelerate import PartialState

                if PartialState().is_main_process:
                    log.warning("reward %s returned NaN or inf (%d samples so far): skipped", self.__name__, len(bad))
                self.warned = True
            skipped = set(bad)
            out = [None if i in skipped else r for i, r in enumerate(out)]
        if callable(kwargs.get("log_metric")):
            kwargs["log_metric"](f"rewards/{self.__name__}/nonfinite", float(len(bad)))
        self.silent = self.silent + 1 if out and all(r is None for r in out) else 0
        if self.silent >= SILENT_BATCHES:  # e.g. a solver endpoint that answers every request with an error
            step = getattr(kwargs.get("trainer_state"), "global_step", "?")
            why = getattr(self.func, "last_error", None)
            raise BackendError(
                f"reward {self.__name__} skipped every sample of {self.silent} batches in a row (step {step}), so "
                f"training has no signal{f'; its solver says: {why}' if why else ''} (fix it and rerun with --resume)"
            )
        return list(out)


class AsyncWatched(Watched):
    """The same for an ``async`` reward: TRL awaits it (several concurrently) because ``__call__`` is a coroutine."""

    async def __call__(self, *args, **kwargs) -> list[float | None]:
        start = time.perf_counter()
        try:
            out = await self.func(*args, **asked(kwargs))
        except Exception as exc:
            raise self._failed(exc, kwargs) from exc
        finally:
            self.seconds += time.perf_counter() - start
        return self._checked(out, kwargs)


def build_rewards(specs: Sequence, train_solver: str, tokenizer: object = None) -> tuple[list[Watched], list[float]]:
    """The reward functions and weights a config names; an unknown reward, setting or solver fails here, at start."""
    from trl.trainer.utils import get_callable_name, is_async_callable

    from rlrefine.solvers import shared_solver

    funcs, weights = [], []
    for spec in specs:
        name, settings = registry.parse_spec("reward", spec)
        weight, label = settings.pop("weight", 1.0), settings.pop("label", None)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise UsageError(f"reward {name!r}: weight must be a number, got {weight!r}")
        if name in ("solver", "partial"):
            settings.setdefault("solver", train_solver)
        for solver in [settings.get("solver"), *(settings.get("solvers") or [])]:
            if isinstance(solver, (str, Mapping)):
                shared_solver(solver)  # a bad solver spec fails now, and a neural one loads once
        func = registry.build("reward", {"name": name, **settings}, tokenizer=tokenizer)
        wrapper = AsyncWatched if is_async_callable(func) else Watched
        funcs.append(wrapper(func, str(label or get_callable_name(func))))
        weights.append(float(weight))
    return funcs, weights


def train_dataset(args: PipelineArgs):
    """RL prompts: the decomposer's messages, plus every column of the problem for the rewards (a plugin solver reads
    the same row here as in evaluation; ``solution`` is the gold answer under the name TRL's own rewards read)."""
    from datasets import Dataset

    from rlrefine.core.format import decomposer_messages
    from rlrefine.data import load_split

    rows = load_split(args.data, "train", args.train_limit, args.train_domain)
    return Dataset.from_list(
        [
            {**r, "prompt": decomposer_messages(r["context"], r["question"], args.instruction), "solution": r["answer"]}
            for r in rows
        ]
    )


def dialogue_rollout(args: PipelineArgs, dataset):
    """TRL's ``rollout_func`` for ``--rollout dynamic``: dialogues with the training solver, at most as many rounds as
    the run's cap allows."""
    from rlrefine.evaluation.dynamic import rounds_for
    from rlrefine.training.dialogue import DialogueRollout
    from rlrefine.training.settings import subquestion_cap

    return DialogueRollout(dataset, args.train_solver, rounds_for(subquestion_cap(args.rewards)), args.instruction)


def refine(args: PipelineArgs, trl_args, model_args, start: Path, run: Path) -> Path:
    """Refine the decomposer with GRPO or RLOO through TRL, PPO (ours, on TRL's GRPO trainer) or RFT, against the
    frozen solver."""
    from transformers import AutoModelForCausalLM
    from trl import get_peft_config

    from rlrefine.engines.models import load_tokenizer
    from rlrefine.training.settings import algorithm_of
    from rlrefine.training.trainers import TimeBudget, last_checkpoint, publish, save_final, train_dtype

    out = run / "rl"
    if (out / "config.json").exists():
        return out
    algorithm = algorithm_of(args.algorithm)
    trainer_class = algorithm.dialogue if args.rollout == "dynamic" else algorithm.trainer
    if trainer_class is None:
        from rlrefine.training.rft import rft

        return rft(args, trl_args, start, out, train_dtype(model_args))
    work = out.with_name("rl.work")
    tokenizer = load_tokenizer(start)
    funcs, weights = build_rewards(args.rewards, args.train_solver, tokenizer)
    trl_args.reward_weights = weights
    trl_args.output_dir = str(work)
    budget = TimeBudget(args.rl_minutes)
    dataset = train_dataset(args)
    dialogue = {"rollout_func": dialogue_rollout(args, dataset)} if args.rollout == "dynamic" else {}
    trainer = trainer_class(
        model=AutoModelForCausalLM.from_pretrained(str(start), dtype=train_dtype(model_args)),
        peft_config=get_peft_config(model_args),
        reward_funcs=funcs,
        args=trl_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[budget],
        **dialogue,
    )
    resumed = last_checkpoint(work) if args.resume else None
    began = time.perf_counter()
    trainer.train(resume_from_checkpoint=resumed)
    seconds = time.perf_counter() - began
    reward_seconds = {f.__name__: f.seconds for f in funcs}
    facts = {
        "algorithm": args.algorithm,
        "rollout": args.rollout,
        "steps": trainer.state.global_step,
        "rl_minutes": budget.seconds() / 60,  # every launch's, up to the checkpoint each resumed from
        "launch_minutes": seconds / 60,
        "num_processes": trainer.accelerator.num_processes,
        "resumed_from": resumed,
        "rewards": args.rewards,
        "reward_seconds": reward_seconds,
        "reward_share": sum(reward_seconds.values()) / max(seconds, 1e-9),  # of this launch's RL wall clock
        "nonfinite_rewards": {f.__name__: f.nonfinite for f in funcs},
    }
    card = (
        f"# rlrefine decomposer ({args.algorithm})\n\nRefined with TRL's {trainer_class.__name__} from `{start}` "
        f"against the frozen solver `{args.train_solver}`.\n\n```json\n{json.dumps(facts, indent=2)}\n```\n"
    )
    final = save_final(trainer, work / "final")  # every process: ZeRO-3 and FSDP gather the weights here
    if trainer.accelerator.is_main_process:
        publish(final, out, card, {"training": facts, "log_history": trainer.state.log_history})
        shutil.rmtree(work, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return out
