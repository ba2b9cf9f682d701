"""The flawed ``teacher``: a stand-in for the paper's teacher LLM (GPT-3.5) on world problems.

It decomposes for a *stronger* solver than the one deployed (merges consecutive hops), sometimes asks redundant or
irrelevant sub-questions, sometimes misorders steps, and caps sub-questions at three. Each flaw fires at a stated
rate, keyed by (seed, problem), so a student can imitate the mixture and RL can find the good mode in its samples.
Rates are settings: ``teacher:merge=0.3,seed=1``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from rlrefine.core.format import MAX_SUBQUESTIONS, render
from rlrefine.core.protocols import Decomposed, UsageError
from rlrefine.data.world import DOMAINS
from rlrefine.decomposers.simple import step, words


@dataclass
class FlawedTeacher:
    """A teacher LLM's habits at stated rates (config knobs). Needs world problems (their gold graph)."""

    merge: float = 0.5  # decompose for a 2-hop solver: skip every second intermediate entity
    misorder: float = 0.1  # swap two adjacent sub-questions
    redundant: float = 0.1  # ask one sub-question twice
    irrelevant: float = 0.1  # ask about an entity off the chain
    cap: int | None = MAX_SUBQUESTIONS  # None: no cap (the paper's Table 10 compares none, 4, 3 and 2)
    seed: int = 0

    price_key = "teacher"
    requires = ("graph",)  # world problems only

    def __post_init__(self) -> None:
        """Named by the knobs that differ from the defaults (``teacher:merge=0.3``), however the spec spelled them."""
        changed = [
            f"{f.name}={_show(getattr(self, f.name))}" for f in fields(self) if getattr(self, f.name) != f.default
        ]
        self.name = "teacher" + (f":{','.join(changed)}" if changed else "")

    @property
    def version(self) -> str:
        """What identifies this teacher's output (its knobs), for caches."""
        return repr(self)

    def entities(self, row: Mapping) -> list[str]:
        """The entities the teacher asks about, in order."""
        if not row.get("graph"):
            raise UsageError(
                f"the flawed teacher needs world problems (a 'graph' column); row {row.get('id')} has none"
            )
        graph = json.loads(row["graph"])
        chain, nodes = graph["chain"], graph["nodes"]
        rng = random.Random(f"teacher:{self.seed}:{row.get('id')}:{row['question']}")
        asks = chain[2:-1:2] if rng.random() < self.merge else chain[1:-1]
        if len(asks) >= 2 and rng.random() < self.misorder:
            i = rng.randrange(len(asks) - 1)
            asks[i], asks[i + 1] = asks[i + 1], asks[i]
        if asks and rng.random() < self.redundant:
            i = rng.randrange(len(asks))
            asks.insert(i + 1, asks[i])
        off_chain = sorted(set(nodes) - set(chain))
        if off_chain and rng.random() < self.irrelevant:
            asks.insert(rng.randint(0, len(asks)), rng.choice(off_chain))
        return asks[: self.cap]

    def questions(self, row: Mapping) -> list[str]:
        entities = self.entities(row)  # first: on data that is not the world it says so, by name
        template, unit = DOMAINS[row["domain"]].question, json.loads(row["graph"] or "{}").get("unit")
        return [template.format(e=e, u=unit) for e in entities]

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]:
        out = []
        for row in rows:
            text = render(self.questions(row))
            out.append(Decomposed(text, words(row["context"], row["question"]), words(text)))
        return out

    def next_subquestion(self, rows: Sequence[Mapping], histories: Sequence[Sequence[tuple]]) -> list[Decomposed]:
        """Dynamic mode: its k-th question, flaws and all, whatever the answers were (a teacher that ignores them).
        A redundant repeat ends the problem there, as the dynamic loop ends any decomposer that repeats itself."""
        return [step(self.questions(row), row, h) for row, h in zip(rows, histories)]


def _show(value: object) -> str:
    return "null" if value is None else f"{value:g}"
