"""The decomposers that need no model: ``none`` (the single-stage baseline) and ``oracle`` (gold sub-questions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rlrefine.core.format import NO_DECOMPOSITION, numbered, render
from rlrefine.core.protocols import Decomposed


def words(*texts: str) -> int:
    """Whitespace words: the token count of decomposers that are not models (a stand-in for an LLM's tokens)."""
    return sum(len(t.split()) for t in texts)


class NoDecomposer:
    """The single-stage baseline: the solver gets the question alone, and no decomposer runs."""

    name, price_key = "none", "none"

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]:
        return [Decomposed(NO_DECOMPOSITION) for _ in rows]

    def next_subquestion(self, rows: Sequence[Mapping], histories: Sequence) -> list[Decomposed]:
        """Dynamic mode is static mode here: nothing to ask, ever."""
        return self.decompose(rows)


class OracleDecomposer:
    """Gold sub-questions (the world's chain; GSM8K's socratic questions). On data without any (``gsm8k``, DROP,
    Bamboogle) it would write "No decomposition" everywhere, ``none`` under another name: it is refused there."""

    name, price_key = "oracle", "oracle"
    requires = ("subquestions|graph",)  # a world problem's gold is its graph (depth 1: "no decomposition")

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]:
        out = []
        for row in rows:
            text = render(list(row.get("subquestions") or []))
            out.append(Decomposed(text, words(row["context"], row["question"]), words(text)))
        return out

    def next_subquestion(self, rows: Sequence[Mapping], histories: Sequence[Sequence[tuple]]) -> list[Decomposed]:
        """Dynamic mode: the k-th gold sub-question after k-1 answers (the answers change nothing: gold is gold)."""
        return [step(list(row.get("subquestions") or []), row, h) for row, h in zip(rows, histories)]


def step(asks: list[str], row: Mapping, history: Sequence[tuple]) -> Decomposed:
    """One dynamic step of a decomposer that knows its whole list: the next item (numbered), or the marker when it
    is done. Tokens are counted as an LLM would read and write them: the prompt grows with every earlier step."""
    k = len(history)
    text = numbered(k + 1, asks[k]) if k < len(asks) else NO_DECOMPOSITION
    seen = [f"{q} {'unknown' if a is None else a}" for q, a in history]
    return Decomposed(text, words(row["context"], row["question"], *seen), words(text))
