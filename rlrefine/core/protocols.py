"""The types every solver, decomposer and engine shares, and nothing else.

This module imports nothing of rlrefine: implementations import their types from here, never from a module that
also builds things, so no import circle can form through a type (lm-eval's ``api/`` is the model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class Decomposed:
    """One decomposer output: text in ``rlrefine.core.format``'s format. ``error`` is set when a backend failed on this
    problem: it is then never trained on, cached or solved."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@runtime_checkable
class Decomposer(Protocol):
    name: str
    price_key: str  # which row of the price table this decomposer's tokens are charged at

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]: ...


@runtime_checkable
class DynamicDecomposer(Protocol):
    """Optional, for dynamic decomposition (``rlrefine.evaluation.dynamic``, the paper's Table 6): the next sub-question of each
    problem after the solver's answers to the earlier ones, instead of all of them at once.

    ``histories[i]`` holds problem i's (sub-question, the solver's answer or None) pairs, oldest first. The reply is
    format text holding the next sub-question, or ``No decomposition .`` when no more is needed; a reply with no new
    sub-question ends that problem too. Tokens are this call's alone (the loop sums them over rounds)."""

    name: str
    price_key: str

    def next_subquestion(
        self, rows: Sequence[Mapping], histories: Sequence[Sequence[tuple[str, str | None]]]
    ) -> list[Decomposed]: ...


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
    """Problems (dataset rows: ``context``, ``question``, ...) and, per problem, the sub-questions a decomposer
    wrote (empty: a direct solve) in; one result per problem out, in order. Static mode, as in the paper."""

    name: str
    price_key: str

    def solve(self, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> list[SolveResult]: ...


@dataclass
class Completion:
    """One generated reply, or the reason there is none (``error``)."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    finished: bool = True  # ended on a stop token, not at the length limit


@runtime_checkable
class ChatEngine(Protocol):
    """A model that answers chat conversations in batches (hf, vllm, openai). Solvers and decomposers on real
    models hold one; engines know nothing of solvers, decomposers or data."""

    name: str  # "hf:MODEL", "openai:MODEL@URL": how solvers and decomposers on it are named by default
    version: str  # identifies the model and settings behind the replies (evaluation caches key on it)

    def chat(self, conversations: Sequence[list[dict]]) -> list[Completion]: ...


class BackendError(ValueError):
    """A backend that cannot serve (unreachable endpoint, refused key, missing package): a setup problem,
    reported as one line before any work starts."""


class UsageError(ValueError):
    """Bad input from the user (a typo'd key, an unknown name, a run folder in the way): one line, exit code 2."""
