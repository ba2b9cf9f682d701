"""Symbolic solvers for the world: frozen, deterministic, with known capability profiles.

A solver reads the gold graph, not the text, but only what the sub-question text names: a sub-question is
understood when it mentions exactly one entity of the story. ``hops=k`` answers when that entity is at most k
relations away from something it knows (given facts plus its own sub-answers so far); ``noise=p`` answers
wrongly with probability p (and carries the error forward); ``memory=m`` remembers only its last m
sub-answers. Randomness is keyed by (seed, problem, sub-question), so answers do not depend on batching.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence

from rlrefine.solvers.base import SolveResult
from rlrefine.world import DOMAINS

_OPS = {"add": lambda v, k: v + k, "sub": lambda v, k: v - k, "mul": lambda v, k: v * k}
_WORD = re.compile(r"[A-Za-z]+")


class SymbolicSolver:
    price_key = "solver"

    def __init__(self, hops: int = 1, noise: float = 0.0, memory: int | None = None, seed: int = 0) -> None:
        if hops < 0 or not 0.0 <= noise <= 1.0 or (memory is not None and memory < 0):
            raise ValueError(f"bad symbolic solver settings: hops={hops} noise={noise} memory={memory}")
        self.hops, self.noise, self.memory, self.seed = hops, noise, memory, seed
        parts = (
            [f"hops={hops}"]
            + ([f"noise={noise:g}"] if noise else [])
            + ([f"memory={memory}"] if memory is not None else [])
        )
        self.name = ",".join(parts)

    def solve(self, rows: Sequence[Mapping], subquestions: Sequence[Sequence[str]]) -> list[SolveResult]:
        return [self._solve_one(row, list(sq)) for row, sq in zip(rows, subquestions)]

    def _solve_one(self, row: Mapping, subquestions: list[str]) -> SolveResult:
        if not row.get("graph"):
            raise ValueError(
                f"symbolic solver {self.name} needs world problems (a 'graph' column); got row {row.get('id')}"
            )
        graph = json.loads(row["graph"])
        nodes, unit, domain = graph["nodes"], graph["unit"], DOMAINS[row["domain"]]
        given = {name: node["value"] for name, node in nodes.items() if node["parent"] is None}
        answered: list[tuple[str, int]] = []
        trace, lines = [], []
        for i, question in enumerate(subquestions):
            entity, value = self._answer(row, nodes, given, answered, question, f"sub{i}")
            trace.append({"subquestion": question, "entity": entity, "answer": None if value is None else str(value)})
            lines.append(
                f"A{i + 1}: " + ("unknown ." if value is None else domain.answer.format(e=entity, k=value, u=unit))
            )
            if value is not None:
                answered = [(e, v) for e, v in answered if e != entity] + [(entity, value)]
        _, value = self._answer(row, nodes, given, answered, row["question"], "final")
        answer = None if value is None else str(value)
        lines.append(f"The answer is: {answer or 'unknown'}")
        text = "\n".join(lines)
        prompt = " ".join([row["context"], *subquestions, row["question"]])
        return SolveResult(answer, text, trace, len(prompt.split()), len(text.split()))

    def _answer(self, row, nodes, given, answered, question, slot) -> tuple[str | None, int | None]:
        mentioned = [w for w in dict.fromkeys(_WORD.findall(question)) if w in nodes]
        if len(mentioned) != 1:
            return (mentioned[0] if mentioned else None), None
        entity = mentioned[0]
        known = dict(given)
        known.update(answered if self.memory is None else answered[len(answered) - self.memory :])
        path = []  # relations from the nearest known ancestor down to the entity
        node = entity
        while node not in known:
            path.append(node)
            node = nodes[node]["parent"]
        if len(path) > self.hops:
            return entity, None
        value = known[node]
        for name in reversed(path):
            value = _OPS[nodes[name]["op"]](value, nodes[name]["k"])
        rng = random.Random(f"{self.seed}:{row.get('id')}:{row['question']}:{slot}:{question}")
        if self.noise and rng.random() < self.noise:
            value += rng.choice((-3, -2, -1, 1, 2, 3))
        return entity, value
