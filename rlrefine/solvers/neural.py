"""Tiny world solvers (``neural``, ``model:FOLDER``): trained without an instruction to write their work as a program,
which a calculator runs over the quantities the story states (``solvers.program``). They read world stories only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rlrefine.core.protocols import SolveResult
from rlrefine.data.world import stated_quantities
from rlrefine.engines import make_engine
from rlrefine.engines.models import ONEHOP_SOLVER
from rlrefine.solvers.model import ModelSolver
from rlrefine.solvers.program import run


class CalculatorSolver(ModelSolver):
    """A model solver whose reply is a program: the calculator runs it over the story's stated quantities."""

    calculator = True
    requires = ("graph",)  # world stories only

    def read(self, text: str, subquestions: Sequence[str], row: Mapping, prompt_tokens: int, completion_tokens: int):
        subs, answer = run(text, len(subquestions), stated_quantities(row["context"]))
        trace = [{"subquestion": q, "answer": a} for q, a in zip(subquestions, subs)]
        return SolveResult(answer, text, trace, prompt_tokens, completion_tokens)


def from_folder(
    path: str, max_tokens: int = 96, batch_size: int = 64, dtype: str = "auto", device: str | None = None
) -> CalculatorSolver:
    """``model:FOLDER``: a tiny world solver trained by ``rlrefine sft --role solver`` (program + calculator)."""
    engine = make_engine(
        "hf", str(path), "solver", max_tokens=max_tokens, batch_size=batch_size, dtype=dtype, device=device
    )
    return CalculatorSolver(engine, f"model:{path}", instruction="")


def neural(
    max_tokens: int = 96, batch_size: int = 64, dtype: str = "auto", device: str | None = None
) -> CalculatorSolver:
    """The bundled one-hop world solver."""
    solver = from_folder(str(ONEHOP_SOLVER), max_tokens, batch_size, dtype, device)
    solver.name = "neural"
    return solver
