"""Markdown tables: every table rlrefine writes (results, reports, model cards, ablations) has one shape."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A GitHub markdown table as lines: the header, its rule, one line per row (each cell as ``str``).

    >>> print("\\n".join(markdown_table(["decomposer", "acc"], [["sft", "0.611"], ["rl", 1]])))
    | decomposer | acc |
    |---|---|
    | sft | 0.611 |
    | rl | 1 |
    """
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows]
