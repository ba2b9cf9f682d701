"""Solvers that are language models, on any engine (``hf``, ``vllm``, ``openai``): the paper's static prompt, all
sub-questions at once, one batched engine call. A real LLM (``hf:``, ``vllm:``, ``openai:`` specs) gets the paper's
instruction and is read as free text: sub-answers from the ``A<i>:`` lines, the answer after "The answer is:". (The
tiny world solvers, read by a calculator instead, are ``solvers.neural``.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rlrefine.core.format import prompt_key, solver_messages
from rlrefine.core.grading import extract_answer
from rlrefine.core.protocols import ChatEngine, SolveResult
from rlrefine.engines import make_engine

_SUB = re.compile(r"^\s*A(\d+)\s*:\s*(.*)$")


def text_result(text: str, subquestions: Sequence[str], prompt_tokens: int, completion_tokens: int) -> SolveResult:
    """A free-text solver's reply read the one way every such solver is read (local model, vLLM, HTTP):
    sub-answers from the ``A<i>: ...`` lines, the final answer by ``grading.extract_answer``'s markers, else none."""
    subs: dict[int, str] = {}
    for line in text.splitlines():
        if match := _SUB.match(line):
            subs.setdefault(int(match.group(1)), match.group(2).strip() or None)
    trace = [{"subquestion": q, "answer": subs.get(i)} for i, q in enumerate(subquestions, 1)]
    return SolveResult(extract_answer(text), text, trace, prompt_tokens, completion_tokens)


class ModelSolver:
    """A chat engine as a solver (static mode: all sub-questions in one prompt), its replies read as free text."""

    calculator = False  # whether a calculator reads the reply (solvers.neural), not the text's own answer
    requires: tuple[str, ...] = ()

    def __init__(
        self, engine: ChatEngine, name: str | None = None, instruction: str | None = None, price_key: str = "solver"
    ) -> None:
        self.engine, self.name, self.price_key = engine, name or engine.name, price_key
        self.instruction = instruction
        # what the eval cache keys on: another model, prompt (its text) or length limit must not hit old cells
        prompt = solver_messages("{context}", "{question}", ["{subquestion}"], instruction)
        self.version = f"{engine.version}|{self.calculator}|{prompt_key(prompt)}"

    def read(self, text: str, subquestions: Sequence[str], row: Mapping, prompt_tokens: int, completion_tokens: int):
        """One reply as a result: free text, read as every free-text solver's is."""
        return text_result(text, subquestions, prompt_tokens, completion_tokens)

    def solve(self, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> list[SolveResult]:
        conversations = [
            solver_messages(row["context"], row["question"], list(sq), self.instruction)
            for row, sq in zip(rows, subquestions)
        ]
        return [
            SolveResult(answer=None, error=out.error)
            if out.error
            else self.read(out.text, sq, row, out.prompt_tokens, out.completion_tokens)
            for out, sq, row in zip(self.engine.chat(conversations), subquestions, rows)
        ]


def on_engine(engine: str | type, model: str, price_key: str = "solver", **options) -> ModelSolver:
    """``ENGINE:MODEL`` (``hf:``, ``vllm:``, ``openai:``, any engine by name or class): a real LLM behind that engine,
    prompted as in the paper."""
    return ModelSolver(make_engine(engine, model, "solver", **options), price_key=price_key)
