"""The solver protocol: every solver (symbolic, neural, hf, vllm, openai) answers a batch the same way.

A solver gets problems (dataset rows: ``context``, ``question``, ...) and, per problem, the sub-questions a
decomposer wrote (empty = direct solve, the single-stage baseline). Static mode as in the paper: all
sub-questions at once, answered in order, then the original question.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class SolveResult:
    """One solved problem. ``error`` is set when the solver failed (timeout, exception): that sample is
    skipped by rewards and counted, never a dead run."""

    answer: str | None
    text: str = ""
    trace: list[dict] = field(default_factory=list)  # per sub-question: {"subquestion", "answer"}
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def answered_share(self) -> float:
        """Share of sub-questions the solver could answer (partial credit when the final answer is rare)."""
        if not self.trace:
            return 1.0 if self.answer is not None else 0.0
        return sum(t.get("answer") is not None for t in self.trace) / len(self.trace)


@runtime_checkable
class Solver(Protocol):
    name: str
    price_key: str  # which row of the price table this solver's tokens are charged at

    def solve(self, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> list[SolveResult]: ...


def solve_unique(solver: Solver, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> list[SolveResult]:
    """One batched solver call in which identical (problem, sub-questions) pairs are solved once.

    GRPO samples several completions per prompt and many are identical; the solver need not see them twice.
    A solver that raises turns into per-sample errors, never an exception for the caller.
    """
    keys = [(row.get("id"), row["context"], row["question"], tuple(sq)) for row, sq in zip(rows, subquestions)]
    first: dict[tuple, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    unique = list(first.values())
    try:
        solved = solver.solve([rows[i] for i in unique], [list(subquestions[i]) for i in unique])
        if len(solved) != len(unique):
            raise RuntimeError(f"solver {solver.name} returned {len(solved)} results for {len(unique)} problems")
    except Exception as exc:  # noqa: BLE001 - any solver failure becomes a skipped sample
        solved = [SolveResult(answer=None, error=f"{type(exc).__name__}: {exc}") for _ in unique]
    by_key = dict(zip((keys[i] for i in unique), solved))
    return [by_key[key] for key in keys]
