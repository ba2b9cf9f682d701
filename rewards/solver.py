"""Rewards from a frozen solver: did the solver, given the decomposer's sub-questions, get the answer?

Each is a factory returning a function with TRL's reward signature, so it works in any TRL trainer. The
dataset columns (``context``, ``question``, ``answer``, ``metric``, ...) arrive as keyword lists. One batched
solver call per generation batch; identical (problem, sub-questions) pairs are solved once, and rewards
naming the same solver share that call. A solver failure gives ``None`` (TRL skips that sample) and is
counted in the logs; it never stops training.
"""

from __future__ import annotations

from collections.abc import Callable

from rlrefine.format import completion_text, parse
from rlrefine.grading import grade
from rlrefine.plugins import named
from rlrefine.solvers import shared_solver, solve_unique

ROW_COLUMNS = ("id", "context", "question", "answer", "metric", "graph", "domain")


def rows_from(kwargs: dict, n: int) -> list[dict]:
    """The problems behind a batch of completions, rebuilt from TRL's per-column keyword lists."""
    missing = [c for c in ("context", "question", "answer") if c not in kwargs]
    if missing:
        raise ValueError(f"solver rewards need dataset columns {missing}; have: {sorted(kwargs)}")
    return [{c: kwargs[c][i] for c in ROW_COLUMNS if c in kwargs} for i in range(n)]


def finished(ids: list[int] | None, tokenizer: object) -> bool:
    """Whether a completion ended with EOS (TRL keeps the EOS in ``completion_ids``), not at the length cap."""
    eos = getattr(tokenizer, "eos_token_id", None)
    return eos is None or ids is None or (len(ids) > 0 and ids[-1] == eos)


def _solve(solver_spec: str, prompts, completions, completion_ids, kwargs):
    rows = rows_from(kwargs, len(completions))
    parsed = [parse(completion_text(c)) for c in completions]
    results = solve_unique(shared_solver(solver_spec), rows, [p.subquestions for p in parsed])
    return rows, parsed, results


def _log(kwargs: dict, name: str, value: float) -> None:
    if callable(kwargs.get("log_metric")):
        kwargs["log_metric"](name, value)


def solver_correctness(
    solver: str = "hops=1", subquestion_cost: float = 0.0, truncated: float | None = 0.0, tokenizer: object = None
) -> Callable:
    """1 if the frozen ``solver`` reaches the gold answer with these sub-questions, else 0 (or F1 for DROP).

    ``subquestion_cost`` is taken off *correct* answers per sub-question: among decompositions that work,
    shorter ones win, and needed steps are never traded for it. ``truncated`` is the reward of a completion
    cut at the length cap (0: a policy cannot game the solver with endless sub-questions; None: skip it).
    """

    def reward(prompts, completions, completion_ids=None, **kwargs) -> list[float | None]:
        rows, parsed, results = _solve(solver, prompts, completions, completion_ids, kwargs)
        ids = completion_ids or [None] * len(completions)
        out: list[float | None] = []
        for row, p, res, cid in zip(rows, parsed, results, ids):
            if res.error is not None:
                out.append(None)
            elif not finished(cid, tokenizer):
                out.append(truncated)
            else:
                score = grade(res.answer, row["answer"], row.get("metric") or "numeric")
                out.append(score - subquestion_cost * p.count if score > 0 else score)
        graded = [
            grade(r.answer, row["answer"], row.get("metric") or "numeric")
            for r, row in zip(results, rows)
            if r.error is None
        ]
        _log(kwargs, f"solver[{solver}]/accuracy", sum(graded) / max(len(graded), 1))
        _log(kwargs, f"solver[{solver}]/errors", float(sum(r.error is not None for r in results)))
        _log(kwargs, "decomposer/subquestions", sum(p.count for p in parsed) / max(len(parsed), 1))
        _log(kwargs, "decomposer/truncated", sum(not finished(c, tokenizer) for c in ids) / max(len(ids), 1))
        return out

    return named(reward, f"solver[{solver}]")


def partial_credit(solver: str = "hops=1") -> Callable:
    """Share of sub-questions the solver could answer: a denser signal where full correctness is rare.

    It rewards answerable sub-questions, not needed ones, so keep its weight below the correctness reward's.
    """

    def reward(prompts, completions, completion_ids=None, **kwargs) -> list[float | None]:
        _, _, results = _solve(solver, prompts, completions, completion_ids, kwargs)
        return [None if r.error else r.answered_share for r in results]

    return named(reward, f"partial[{solver}]")


def multi_solver(solvers: list[str] | tuple[str, ...] = ("hops=1", "memory=1", "noise=0.1")) -> Callable:
    """Mean correctness over several frozen solvers, for decomposers that work with any of them."""
    solvers = list(solvers)

    def reward(prompts, completions, completion_ids=None, **kwargs) -> list[float | None]:
        per_solver = []
        for spec in solvers:
            rows, _, results = _solve(spec, prompts, completions, completion_ids, kwargs)
            per_solver.append(
                [
                    None if r.error else grade(r.answer, row["answer"], row.get("metric") or "numeric")
                    for r, row in zip(results, rows)
                ]
            )
            scores = [s for s in per_solver[-1] if s is not None]
            _log(kwargs, f"solver[{spec}]/accuracy", sum(scores) / max(len(scores), 1))
        out = []
        for scores in zip(*per_solver):
            ok = [s for s in scores if s is not None]
            out.append(sum(ok) / len(ok) if ok else None)
        return out

    return named(reward, "multi_solver")
