"""Solvers that are language models: a local folder or hub id, generating in batches.

With ``calculator=True`` (the tiny world solvers) the model writes its work as a program and the calculator
computes every value, looking up the quantities the story states (``solvers.program``); otherwise (real LLMs) the answer is read from "The answer is: ..."
and sub-answers from the ``A<i>:`` lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rlrefine.format import solver_messages
from rlrefine.grading import extract_answer
from rlrefine.solvers.base import SolveResult
from rlrefine.solvers.program import run
from rlrefine.world import stated_quantities

_SUB = re.compile(r"^\s*A(\d+)\s*:\s*(.*)$")


def text_result(text: str, subquestions: Sequence[str], prompt_tokens: int, completion_tokens: int) -> SolveResult:
    """A free-text solver's reply read the one way every such solver is read (local model, vLLM, HTTP):
    sub-answers from the ``A<i>: ...`` lines, the answer after "The answer is:" (or "####"), else none."""
    subs: dict[int, str] = {}
    for line in text.splitlines():
        if match := _SUB.match(line):
            subs.setdefault(int(match.group(1)), match.group(2).strip() or None)
    trace = [{"subquestion": q, "answer": subs.get(i)} for i, q in enumerate(subquestions, 1)]
    return SolveResult(extract_answer(text), text, trace, prompt_tokens, completion_tokens)


class ModelSolver:
    """A neural solver behind the solver protocol (static mode: all sub-questions in one prompt)."""

    price_key = "solver"

    def __init__(
        self,
        path: str,
        name: str | None = None,
        calculator: bool = True,
        instruction: str | None = "",
        max_new_tokens: int = 96,
        batch_size: int = 64,
        **load_kwargs,
    ) -> None:
        from rlrefine.models import load, weights_version

        self.name = name or f"model:{path}"
        self.model, self.tokenizer = load(path, **load_kwargs)
        self.calculator, self.instruction = calculator, instruction
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        # what the eval cache keys on: a retrained solver, another prompt or length limit must not hit old cells
        self.version = f"{weights_version(path)}|{calculator}|{instruction!r}|{max_new_tokens}"

    def solve(self, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> list[SolveResult]:
        from rlrefine.models import generate

        conversations = [
            solver_messages(row["context"], row["question"], list(sq), self.instruction)
            for row, sq in zip(rows, subquestions)
        ]
        generations = generate(
            self.model, self.tokenizer, conversations, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size
        )
        results = []
        for (gen,), sq, row in zip(generations, subquestions, rows):
            if not self.calculator:
                results.append(text_result(gen.text, sq, gen.prompt_tokens, gen.completion_tokens))
                continue
            subs, answer = run(gen.text, len(sq), stated_quantities(row["context"]))
            trace = [{"subquestion": q, "answer": a} for q, a in zip(sq, subs)]
            results.append(SolveResult(answer, gen.text, trace, gen.prompt_tokens, gen.completion_tokens))
        return results
