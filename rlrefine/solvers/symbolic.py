"""Symbolic solvers for the world: frozen, deterministic, with known capability profiles.

A solver reads the gold graph, not the text, but only what the text names: a sub-question is understood
when it mentions exactly one entity of the story. ``hops=k`` answers when that entity is at most k
relations away from something it knows (given facts plus its own sub-answers so far); ``noise=p`` answers
wrongly with probability p (and carries the error forward); ``memory=m`` remembers only its last m
sub-answers. Randomness is keyed by (seed, problem, sub-question), so answers do not depend on batching.
Each writes its work as a program (``solvers.program``) that the calculator reproduces exactly, so its
outputs can also train neural solvers.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence

from rlrefine.core.protocols import SolveResult, UsageError
from rlrefine.solvers.program import UNKNOWN, number_text

_OPS = {"add": lambda v, k: v + k, "sub": lambda v, k: v - k, "mul": lambda v, k: v * k}
_SYMBOLS = {"add": "+", "sub": "-", "mul": "*"}
_WORD = re.compile(r"[A-Za-z]+")


class SymbolicSolver:
    price_key = "solver"
    requires = ("graph",)  # world problems only

    def __init__(self, hops: int = 1, noise: float = 0.0, memory: int | None = None, seed: int = 0) -> None:
        if hops < 0 or not 0.0 <= noise <= 1.0 or (memory is not None and memory < 0):
            raise UsageError(f"bad symbolic solver settings: hops={hops} noise={noise} memory={memory}")
        self.hops, self.noise, self.memory, self.seed = hops, noise, memory, seed
        parts = (
            [f"hops={hops}"]
            + ([f"noise={noise:g}"] if noise else [])
            + ([f"memory={memory}"] if memory is not None else [])
            + ([f"seed={seed}"] if seed and noise else [])  # the seed only matters to a noisy solver
        )
        self.name = ",".join(parts)

    def solve(self, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> list[SolveResult]:
        return [self._solve_one(row, list(sq)) for row, sq in zip(rows, subquestions)]

    def _solve_one(self, row: Mapping, subquestions: list[str]) -> SolveResult:
        if not row.get("graph"):  # that problem fails, not the batch
            error = f"ValueError: symbolic solver {self.name} needs world problems (a 'graph' column); row {row.get('id')} has none"
            return SolveResult(answer=None, error=error)
        nodes = json.loads(row["graph"])["nodes"]
        given = {name: node["value"] for name, node in nodes.items() if node["parent"] is None}
        answered: list[tuple[str, int]] = []  # (entity, value) of its own sub-answers, oldest first
        trace, lines = [], []
        for i, question in enumerate(subquestions, 1):
            entity, value, work = self._answer(row, nodes, given, answered, question, f"sub{i}")
            trace.append({"subquestion": question, "entity": entity, "answer": number_text(value)})
            lines.append(f"A{i}: {work}")
            if value is not None:
                answered = [(e, v) for e, v in answered if e != entity] + [(entity, value)]
        _, value, work = self._answer(row, nodes, given, answered, row["question"], "final")
        lines.append(f"The answer is: {work}")
        text = "\n".join(lines)
        prompt = " ".join([row["context"], *subquestions, row["question"]])
        return SolveResult(number_text(value), text, trace, len(prompt.split()), len(text.split()))

    def _answer(self, row, nodes, given, answered, question, slot) -> tuple[str | None, int | None, str]:
        """(entity asked about, its value or None, the work written for it)."""
        mentioned = [w for w in dict.fromkeys(_WORD.findall(question)) if w in nodes]
        if len(mentioned) != 1:
            return (mentioned[0] if mentioned else None), None, UNKNOWN
        entity = mentioned[0]
        known = {**given, **dict(answered if self.memory is None else answered[len(answered) - self.memory :])}
        path, node = [], entity  # relations from the nearest known ancestor down to the entity
        while node not in known:
            path.append(node)
            node = nodes[node]["parent"]
        if len(path) > self.hops:
            return entity, None, UNKNOWN
        if not path:  # a quantity the story states, or one it answered before: its name is its value
            return entity, known[entity], entity
        value = known[node]
        for name in reversed(path):
            value = _OPS[nodes[name]["op"]](value, nodes[name]["k"])
        parts = [f"{name} = {nodes[name]['parent']} {_SYMBOLS[nodes[name]['op']]} {nodes[name]['k']}" for name in path]
        rng = random.Random(f"{self.seed}:{row.get('id')}:{row['question']}:{slot}:{question}")
        if self.noise and rng.random() < self.noise:
            delta = rng.choice((-3, -2, -1, 1, 2, 3))
            value += delta
            parts[0] += f" {'+' if delta > 0 else '-'} {abs(delta)}"
        return entity, value, " , ".join(parts)
