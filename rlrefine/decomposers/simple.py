"""The decomposers that need no model: ``none`` (the single-stage baseline) and ``oracle`` (gold sub-questions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rlrefine.format import NO_DECOMPOSITION, render
from rlrefine.types import Decomposed, UsageError


def words(*texts: str) -> int:
    """Whitespace words: the token count of decomposers that are not models (a stand-in for an LLM's tokens)."""
    return sum(len(t.split()) for t in texts)


class NoDecomposer:
    """The single-stage baseline: the solver gets the question alone, and no decomposer runs."""

    name, price_key = "none", "none"

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]:
        return [Decomposed(NO_DECOMPOSITION) for _ in rows]


def has_gold(rows: Sequence[Mapping]) -> bool:
    """Whether these problems come with gold decompositions: some row has gold sub-questions, or is a world problem
    (its gold graph is its gold; a depth-1 problem's gold decomposition is "no decomposition")."""
    return any(row.get("subquestions") or row.get("graph") for row in rows)


class OracleDecomposer:
    """Gold sub-questions (the world's chain; GSM8K's socratic questions). On data without any (``gsm8k``, DROP,
    Bamboogle) it would write "No decomposition" everywhere, ``none`` under another name: ``check`` refuses it."""

    name, price_key = "oracle", "oracle"

    def check(self, rows: Sequence[Mapping]) -> None:
        if rows and not has_gold(rows):
            domains = ", ".join(sorted({str(row.get("domain") or "?") for row in rows}))
            raise UsageError(
                f"decomposer oracle needs gold sub-questions, and none of these {len(rows)} problems (domain "
                f"{domains}) has any; use data that has them (world, gsm8k:socratic, a JSONL with 'subquestions')"
            )

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]:
        out = []
        for row in rows:
            text = render(list(row.get("subquestions") or []))
            out.append(Decomposed(text, words(row["context"], row["question"]), words(text)))
        return out
