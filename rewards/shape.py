"""Shape rewards that need no solver: format, cost (the paper's cost analysis), and the sub-question cap.

>>> format_validity(None, ["Q1: How many cards does Pia have ?", "Pia Pia"])
[1.0, 0.0]
>>> subquestion_cost(0.1)(None, ["Q1: a ?\\nQ2: b ?", "No decomposition ."])
[-0.2, 0.0]
>>> subquestion_cap(3)(None, ["Q1: a ?\\nQ2: b ?\\nQ3: c ?\\nQ4: d ?"])
[-1.0]
"""

from __future__ import annotations

from collections.abc import Callable

from rlrefine.format import MAX_SUBQUESTIONS, completion_text, parse
from rlrefine.plugins import named


def format_validity(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
    """1 when the completion follows the sub-question format exactly (numbered questions, no repeats)."""
    return [float(parse(completion_text(c)).valid) for c in completions]


def subquestion_cost(per_subquestion: float = 0.05) -> Callable:
    """Minus ``per_subquestion`` for each sub-question: every one is a solver call that costs tokens."""

    def reward(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        return [-per_subquestion * parse(completion_text(c)).count or 0.0 for c in completions]

    return named(reward, "cost")


def token_cost(per_token: float = 0.002) -> Callable:
    """Minus ``per_token`` for each generated token (the decomposer's own share of the bill)."""

    def reward(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        ids = completion_ids or [completion_text(c).split() for c in completions]
        return [-per_token * len(i) for i in ids]

    return named(reward, "token_cost")


def subquestion_cap(cap: int = MAX_SUBQUESTIONS) -> Callable:
    """-1 for a decomposition with more than ``cap`` sub-questions (the paper's cap of three was best)."""

    def reward(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        return [-float(parse(completion_text(c)).count > cap) for c in completions]

    return named(reward, f"cap[{cap}]")
