"""Rewards from a frozen solver: did the solver, given the decomposer's sub-questions, get the answer?

Each is a callable class with TRL's reward signature (picklable, as TRL's own parametrised rewards are), so it works
in any TRL trainer. The dataset columns (``context``, ``question``, ``answer``, ``metric``, ...) arrive as keyword
lists. One batched solver call per generation batch; identical (problem, sub-questions) pairs are solved once, and
rewards naming the same solver share that call. A solver failure gives ``None`` (TRL skips that sample) and is
counted in the logs; it never stops training.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from rlrefine.core.format import completion_text, parse
from rlrefine.core.protocols import UsageError
from rlrefine.solvers import shared_solver, solve_and_grade

CUT_WARNING = 0.1  # share of a batch cut at the length limit that is worth a warning: those samples learn nothing
log = logging.getLogger(__name__)


def rows_from(kwargs: dict, n: int) -> list[dict]:
    """The problems behind a batch of completions, rebuilt from TRL's per-column keyword lists: every column (a list
    with one entry per completion) reaches the solver, whatever the dataset holds."""
    missing = [c for c in ("context", "question", "answer") if c not in kwargs]
    if missing:
        raise UsageError(f"solver rewards need dataset columns {missing}; have: {sorted(kwargs)}")
    columns = {k: v for k, v in kwargs.items() if isinstance(v, list) and len(v) == n}
    return [{c: values[i] for c, values in columns.items()} for i in range(n)]


def finished(ids: list[int] | None, tokenizer: object) -> bool:
    """Whether a completion ended with EOS (TRL keeps the EOS in ``completion_ids``), not at the length cap."""
    eos = getattr(tokenizer, "eos_token_id", None)
    return eos is None or ids is None or (len(ids) > 0 and ids[-1] == eos)


def _solve(solver_spec: str | Mapping, completions, kwargs) -> tuple[list, list[dict]]:
    """Parse the completions, then solve and grade them (one batched call; memoised, so rewards on one solver share
    it). Returns the parsed decompositions and one graded record per sample (``score`` None where the solver
    failed)."""
    rows = rows_from(kwargs, len(completions))
    parsed = [parse(completion_text(c)) for c in completions]
    return parsed, solve_and_grade(rows, [p.subquestions for p in parsed], shared_solver(solver_spec))


def _label(spec: str | Mapping) -> str:
    """How a solver is named in reward and metric names: its spec, or for a mapping spec (inline too) its name."""
    return spec if isinstance(spec, str) and not spec.lstrip().startswith("{") else shared_solver(spec).name


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / max(len(values), 1)


def _log(kwargs: dict, name: str, value: float) -> None:
    if callable(kwargs.get("log_metric")):
        kwargs["log_metric"](name, value)


class SolverCorrectness:
    """1 if the frozen ``solver`` reaches the gold answer with these sub-questions, else 0 (or F1 for DROP).

    ``subquestion_cost`` is a share taken off *correct* answers per sub-question (a score of 1 with two sub-questions
    at 0.05: 0.9; F1's partial credit shrinks by the same share): among decompositions that work, shorter ones win,
    and a right answer never scores below a wrong one (0), however many sub-questions it took. ``truncated`` is the
    reward of a completion cut at the length cap (0: a policy cannot game the solver with endless sub-questions;
    None: skip it).
    """

    def __init__(
        self,
        solver: str | Mapping = "hops=1",
        subquestion_cost: float = 0.0,
        truncated: float | None = 0.0,
        tokenizer: object = None,
    ) -> None:
        self.solver, self.subquestion_cost, self.truncated, self.tokenizer = (
            solver,
            subquestion_cost,
            truncated,
            tokenizer,
        )
        self.__name__ = f"solver[{_label(solver)}]"
        self.warned, self.last_error = False, None

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float | None]:
        parsed, graded = _solve(self.solver, completions, kwargs)
        scores = [g["score"] for g in graded]
        self.last_error = next((g["error"] for g in graded if g["error"]), None)  # why a sample was skipped
        ids = completion_ids or [None] * len(completions)
        cut = _mean([not finished(c, self.tokenizer) for c in ids])
        if cut >= CUT_WARNING and self.truncated is not None and not self.warned:
            log.warning(
                "%s: %.0f %% of a batch was cut at the completion-length limit and scored %s: if decompositions need "
                "more tokens (deeper problems, more sub-questions), raise max_completion_length",
                self.__name__, 100 * cut, self.truncated,
            )  # fmt: skip
            self.warned = True
        out: list[float | None] = []
        for p, score, cid in zip(parsed, scores, ids):
            if score is None:
                out.append(None)
            elif not finished(cid, self.tokenizer):
                out.append(self.truncated)
            else:
                out.append(score * max(1.0 - self.subquestion_cost * p.count, 0.0))
        name = _label(self.solver)
        _log(kwargs, f"solver[{name}]/accuracy", _mean(scores))
        _log(kwargs, f"solver[{name}]/errors", float(sum(g["error"] is not None for g in graded)))
        _log(kwargs, "decomposer/subquestions", _mean([p.count for p in parsed]))
        _log(kwargs, "decomposer/truncated", cut)
        return out


class PartialCredit:
    """Share of sub-questions the solver could answer: a denser signal where full correctness is rare.

    It rewards answerable sub-questions, not needed ones, so keep its weight below the correctness reward's.
    """

    def __init__(self, solver: str | Mapping = "hops=1") -> None:
        self.solver, self.__name__, self.last_error = solver, f"partial[{_label(solver)}]", None

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float | None]:
        _, graded = _solve(self.solver, completions, kwargs)
        self.last_error = next((g["error"] for g in graded if g["error"]), None)
        return [None if g["error"] else g["answered_share"] for g in graded]


class MultiSolver:
    """Mean correctness over several frozen solvers, for decomposers that work with any of them."""

    __name__ = "multi_solver"

    def __init__(self, solvers: list[str] | tuple[str, ...] = ("hops=1", "memory=1", "noise=0.1")) -> None:
        self.solvers = list(solvers)

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float | None]:
        per_solver = []
        for spec in self.solvers:
            per_solver.append([g["score"] for g in _solve(spec, completions, kwargs)[1]])
            _log(kwargs, f"solver[{_label(spec)}]/accuracy", _mean(per_solver[-1]))
        return [None if all(s is None for s in scores) else _mean(scores) for scores in zip(*per_solver)]
