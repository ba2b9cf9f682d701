"""Solvers that are language models, on any engine (``hf``, ``vllm``, ``openai``): the paper's static prompt, all
sub-questions at once, one batched engine call.

A real LLM (``hf:``, ``vllm:``, ``openai:`` specs) gets the paper's instruction and is read as free text: sub-answers
from the ``A<i>:`` lines, the answer after "The answer is:". A tiny world solver (``neural``, ``model:FOLDER``) was
trained without an instruction to write its work as a program, which a calculator runs over the quantities the story
states (``solvers.program``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rlrefine.engines import make_engine
from rlrefine.format import prompt_key, solver_messages
from rlrefine.grading import extract_answer
from rlrefine.models import ONEHOP_SOLVER
from rlrefine.protocols import ChatEngine, SolveResult
from rlrefine.solvers.program import run
from rlrefine.world import stated_quantities

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
    """A chat engine as a solver (static mode: all sub-questions in one prompt)."""

    def __init__(
        self,
        engine: ChatEngine,
        name: str | None = None,
        instruction: str | None = None,
        calculator: bool = False,
        price_key: str = "solver",
    ) -> None:
        self.engine, self.name, self.price_key = engine, name or engine.name, price_key
        self.instruction, self.calculator = instruction, calculator
        self.requires = ("graph",) if calculator else ()  # the calculator reads a world story's quantities
        # what the eval cache keys on: another model, prompt (its text) or length limit must not hit old cells
        prompt = solver_messages("{context}", "{question}", ["{subquestion}"], instruction)
        self.version = f"{engine.version}|{calculator}|{prompt_key(prompt)}"

    def solve(self, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> list[SolveResult]:
        conversations = [
            solver_messages(row["context"], row["question"], list(sq), self.instruction)
            for row, sq in zip(rows, subquestions)
        ]
        results = []
        for out, sq, row in zip(self.engine.chat(conversations), subquestions, rows):
            if out.error:
                results.append(SolveResult(answer=None, error=out.error))
            elif not self.calculator:
                results.append(text_result(out.text, sq, out.prompt_tokens, out.completion_tokens))
            else:
                subs, answer = run(out.text, len(sq), stated_quantities(row["context"]))
                trace = [{"subquestion": q, "answer": a} for q, a in zip(sq, subs)]
                results.append(SolveResult(answer, out.text, trace, out.prompt_tokens, out.completion_tokens))
        return results


def from_folder(
    path: str, max_tokens: int = 96, batch_size: int = 64, dtype: str = "auto", device: str | None = None
) -> ModelSolver:
    """``model:FOLDER``: a tiny world solver trained by ``rlrefine sft --role solver`` (program + calculator)."""
    engine = make_engine(
        "hf", str(path), "solver", max_tokens=max_tokens, batch_size=batch_size, dtype=dtype, device=device
    )
    return ModelSolver(engine, f"model:{path}", instruction="", calculator=True)


def neural(max_tokens: int = 96, batch_size: int = 64, dtype: str = "auto", device: str | None = None) -> ModelSolver:
    """The bundled one-hop world solver."""
    solver = from_folder(str(ONEHOP_SOLVER), max_tokens, batch_size, dtype, device)
    solver.name = "neural"
    return solver


def on_engine(engine: str | type, model: str, price_key: str = "solver", **options) -> ModelSolver:
    """``ENGINE:MODEL`` (``hf:``, ``vllm:``, ``openai:``, any engine by name or class): a real LLM behind that engine,
    prompted as in the paper."""
    return ModelSolver(make_engine(engine, model, "solver", **options), price_key=price_key)
