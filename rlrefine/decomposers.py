"""Decomposers: ``none`` (single-stage baseline), ``oracle`` (gold sub-questions), the flawed ``teacher`` that
imitates a real teacher LLM, and trained models (by path). All write decomposer text in ``format``'s format.

The flawed teacher is a stand-in for GPT-3.5 in the paper: it decomposes for a *stronger* solver than the
one deployed (merges consecutive hops), sometimes asks redundant or irrelevant sub-questions, sometimes
misorders steps, and caps sub-questions at three. Each flaw fires at a stated rate, keyed by (seed, problem),
so a student can imitate the mixture and RL can find the good mode in its samples.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

from rlrefine.format import MAX_SUBQUESTIONS, NO_DECOMPOSITION, render
from rlrefine.world import DOMAINS


@dataclass
class Decomposed:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # a backend failed on this problem (set by rlrefine.backends; never trained on)


@runtime_checkable
class Decomposer(Protocol):
    name: str
    price_key: str

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]: ...


def _words(*texts: str) -> int:
    return sum(len(t.split()) for t in texts)


class NoDecomposer:
    """The single-stage baseline: the solver gets the question alone, and no decomposer runs."""

    name, price_key = "none", "none"

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]:
        return [Decomposed(NO_DECOMPOSITION) for _ in rows]


class OracleDecomposer:
    """Gold sub-questions (the world's chain; GSM8K's socratic questions)."""

    name, price_key = "oracle", "oracle"

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]:
        out = []
        for row in rows:
            text = render(list(row.get("subquestions") or []))
            out.append(Decomposed(text, _words(row["context"], row["question"]), _words(text)))
        return out


@dataclass
class FlawedTeacher:
    """A teacher LLM's habits at stated rates (config knobs). Needs world problems (their gold graph)."""

    merge: float = 0.5  # decompose for a 2-hop solver: skip every second intermediate entity
    misorder: float = 0.1  # swap two adjacent sub-questions
    redundant: float = 0.1  # ask one sub-question twice
    irrelevant: float = 0.1  # ask about an entity off the chain
    cap: int = MAX_SUBQUESTIONS
    seed: int = 0

    name = "teacher"
    price_key = "teacher"

    @property
    def version(self) -> str:
        """What identifies this teacher's output (its knobs), for caches."""
        return repr(self)

    def entities(self, row: Mapping) -> list[str]:
        """The entities the teacher asks about, in order."""
        if not row.get("graph"):
            raise ValueError(
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

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]:
        out = []
        for row in rows:
            entities = self.entities(row)  # first: on data that is not the world it says so, by name
            template, unit = DOMAINS[row["domain"]].question, json.loads(row["graph"] or "{}").get("unit")
            text = render([template.format(e=e, u=unit) for e in entities])
            out.append(Decomposed(text, _words(row["context"], row["question"]), _words(text)))
        return out


TEACHER_KEYS = {f.name: f.type for f in fields(FlawedTeacher)}
SPEC_HELP = (
    "'none', 'oracle', 'teacher[:merge=P,misorder=P,redundant=P,irrelevant=P,cap=N,seed=S]', a model folder, "
    "a real model ('hf:PATH_OR_ID', 'vllm:MODEL', 'openai:MODEL[@BASE_URL]' or a mapping {backend: ..., model: ...}), "
    "or LABEL=SPEC to name one of these in tables"
)


def make_decomposer(spec: str | Mapping | Decomposer, **model_kwargs) -> Decomposer:
    """A decomposer from its spec; a bad spec fails naming what is valid."""
    from rlrefine.backends import is_backend_spec, make_backend_decomposer

    if is_backend_spec(spec):  # hf:, vllm:, openai:, or a {backend: ...} mapping
        return make_backend_decomposer(spec)
    if not isinstance(spec, str):
        return spec
    label = re.match(r"^([A-Za-z][\w.-]*)=(.+)$", spec)
    if label:  # "sft=runs/x/sft": a readable name for a decomposer in tables
        decomposer = make_decomposer(label.group(2), **model_kwargs)
        decomposer.name = label.group(1)
        return decomposer
    if spec == "none":
        return NoDecomposer()
    if spec == "oracle":
        return OracleDecomposer()
    name, _, args = spec.partition(":")
    if name == "teacher":
        kwargs = {}
        for part in filter(None, args.split(",")):
            key, sep, value = part.partition("=")
            if not sep or key not in TEACHER_KEYS:
                raise ValueError(f"teacher spec {spec!r}: unknown knob {key!r}; valid: {', '.join(TEACHER_KEYS)}")
            kwargs[key] = (int if key in ("cap", "seed") else float)(value)
        teacher = FlawedTeacher(**kwargs)
        teacher.name = spec
        return teacher
    if os.path.isdir(spec):
        from rlrefine.models import ModelDecomposer

        return ModelDecomposer(spec, **model_kwargs)
    raise ValueError(f"unknown decomposer {spec!r}; valid: {SPEC_HELP}")
