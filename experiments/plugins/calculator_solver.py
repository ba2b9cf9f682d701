"""An example solver plugin, a complete file to copy: it answers world problems by reading the story with a small
calculator, never the gold graph (what a tool-using solver does). Name it wherever a solver is named:

    rlrefine eval --decomposers oracle teacher --solvers experiments/plugins/calculator_solver.py:StoryCalculator
    train_solver: '{name: experiments/plugins/calculator_solver.py:StoryCalculator, hops: 2}'

A solver is an object with ``name``, ``price_key`` and ``solve(rows, subquestions) -> list[SolveResult]``: one result
per problem, in order. A class (or any function) named in a spec is called with the spec's settings (``hops``).
"""

import re

from rlrefine.core.protocols import SolveResult

GIVEN = re.compile(r"^(?:The )?(\w+) (?:has|earned) (\d+) \w+$")
RELATION = re.compile(r"^(?:Compared to|Beside the) (\w+) , (?:the )?(\w+) (?:has|earned) (.+)$")
CHANGES = [  # the relation's wording -> what it does to the parent's value
    (re.compile(r"^(\d+) (?:more \w+|\w+ extra)$"), lambda v, k: v + k),
    (re.compile(r"^(\d+) (?:fewer \w+|\w+ less)$"), lambda v, k: v - k),
    (re.compile(r"^(?:twice as many|double the) \w+$"), lambda v, k: 2 * v),
    (re.compile(r"^(?:three times as many|triple the) \w+$"), lambda v, k: 3 * v),
]


def read_story(context: str) -> tuple[dict[str, int], dict[str, tuple[str, object, int]]]:
    """The stated quantities and the relations (entity -> parent, operation, number) of a world story."""
    given, relations = {}, {}
    for sentence in filter(None, (s.strip() for s in context.split(" ."))):
        if match := GIVEN.match(sentence):
            given[match.group(1)] = int(match.group(2))
        elif match := RELATION.match(sentence):
            parent, entity, change = match.groups()
            for pattern, op in CHANGES:
                if number := pattern.match(change):
                    relations[entity] = (parent, op, int(number.group(1)) if number.groups() else 0)
    return given, relations


class StoryCalculator:
    """Answers a question when its entity is at most ``hops`` relations from a value it knows (stated, or its own
    earlier answer): the symbolic ``hops=K`` solver's capability, from the text alone."""

    price_key = "solver"

    def __init__(self, hops: int = 1) -> None:
        self.hops, self.name = hops, f"calculator:hops={hops}"

    def solve(self, rows, subquestions) -> list[SolveResult]:
        return [self._solve(row, list(subs)) for row, subs in zip(rows, subquestions)]

    def _solve(self, row, subs: list[str]) -> SolveResult:
        given, relations = read_story(row["context"])
        known, trace, answer = dict(given), [], None
        for question in [*subs, row["question"]]:
            answer = self._answer(question, known, relations)
            trace.append({"subquestion": question, "answer": None if answer is None else str(answer)})
        text = "\n".join(f"A{i}: {t['answer']}" for i, t in enumerate(trace[:-1], 1))
        text += f"\nThe answer is: {trace[-1]['answer']}"
        words = len(row["context"].split()) + sum(len(q.split()) for q in [*subs, row["question"]])
        return SolveResult(trace[-1]["answer"], text.strip(), trace[:-1], words, len(text.split()))

    def _answer(self, question: str, known: dict, relations: dict) -> int | None:
        named = [w for w in dict.fromkeys(re.findall(r"\w+", question)) if w in known or w in relations]
        if len(named) != 1:
            return None
        path, entity = [], named[0]
        while entity not in known and entity in relations and len(path) <= self.hops:
            path.append(entity)
            entity = relations[entity][0]
        if entity not in known or len(path) > self.hops:
            return None
        value = known[entity]
        for name in reversed(path):
            value = relations[name][1](value, relations[name][2])
        known[named[0]] = value
        return value
