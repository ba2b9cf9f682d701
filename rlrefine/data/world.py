"""The embedded decomposition world: seeded multi-step word problems with their gold computation graph.

A problem is a story of given facts ("Ava has 5 marbles .") and relations ("Compared to Ava , Ben has 3 more
marbles ."), a question about the last entity of a chain, the exact answer and the oracle decomposition (one
sub-question per intermediate entity). The wording puts the parent's name right before the child's, so what a
decomposer must do is local, which is what lets tiny models learn it on a CPU. Two domains with disjoint
content words (people/marbles, shops/money) make cross-domain transfer measurable.

Text is written with spaces around punctuation so that word-level tokenizers see clean words.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass, field

from datasets import Dataset, DatasetDict

from rlrefine.core.protocols import UsageError
from rlrefine.core.schema import FEATURES

PEOPLE = (
    "Ava Ben Cy Dan Eve Fay Gus Hal Ivy Jon Kim Lea Max Ned Oli Pam Quin Rex Sam Tia Uma Vic Wes Xia Yan Zoe "
    "Abe Bea Cal Dot Eli Flo Gil Hana Ira Jude Kai Lou Mia Nia Otto Pia Ray Sia Ted Val Will Yul Zed Ada Bo Cleo"
).split()
SHOPS = (
    "bakery florist pharmacy bookstore cafe garage bistro tailor barber grocer jeweler butcher deli kiosk pub "
    "salon studio gallery arcade bazaar cinema diner hostel laundry market nursery optician pantry pizzeria "
    "quarry restaurant stationer theater vineyard winery workshop boutique brewery cannery creamery"
).split()


@dataclass(frozen=True)
class Domain:
    """Templates of one domain. ``{e}``/``{p}`` are the entity and its parent, ``{u}`` the unit, ``{k}`` a number."""

    name: str
    entities: tuple[str, ...]
    units: tuple[str, ...]
    given: str
    add: str
    sub: str
    mul: dict[int, str]
    question: str
    answer: str

    def relation(self, op: str, k: int) -> str:
        return {"add": self.add, "sub": self.sub}.get(op) or self.mul[k]


DOMAINS: dict[str, Domain] = {
    "marbles": Domain(
        name="marbles",
        entities=tuple(PEOPLE),
        units=("marbles", "stickers", "apples", "cards", "shells"),
        given="{e} has {k} {u} .",
        add="Compared to {p} , {e} has {k} more {u} .",
        sub="Compared to {p} , {e} has {k} fewer {u} .",
        mul={
            2: "Compared to {p} , {e} has twice as many {u} .",
            3: "Compared to {p} , {e} has three times as many {u} .",
        },
        question="How many {u} does {e} have ?",
        answer="{e} has {k} {u} .",
    ),
    "money": Domain(
        name="money",
        entities=tuple(SHOPS),
        units=("dollars", "euros", "pounds", "francs", "pesos"),
        given="The {e} earned {k} {u} .",
        add="Beside the {p} , the {e} earned {k} {u} extra .",
        sub="Beside the {p} , the {e} earned {k} {u} less .",
        mul={
            2: "Beside the {p} , the {e} earned double the {u} .",
            3: "Beside the {p} , the {e} earned triple the {u} .",
        },
        question="How many {u} did the {e} earn ?",
        answer="The {e} earned {k} {u} .",
    ),
}


_STATED = [
    re.compile(
        r"(?:^|(?<=\. ))"
        + re.escape(d.given).replace(r"\{e\}", r"(\w+)").replace(r"\{k\}", r"(\d+)").replace(r"\{u\}", r"\w+")
    )
    for d in DOMAINS.values()
]


@dataclass
class WorldConfig:
    """Knobs of the generator. Presets in ``PRESETS`` name tested combinations."""

    seed: int = 0
    domains: list[str] = field(default_factory=lambda: ["marbles", "money"])
    depth_min: int = 2
    depth_max: int = 4
    distractors: int = 2  # given facts about entities off the chain
    branching: int = 0  # relations hanging off chain entities (harder: the story looks like a tree)
    shuffle_story: bool = False  # chain order (default) or shuffled sentences
    num_min: int = 1
    num_max: int = 20
    value_cap: int = 400
    train_size: int = 5000
    validation_size: int = 500
    test_size: int = 1000

    def __post_init__(self) -> None:
        unknown = sorted(set(self.domains) - set(DOMAINS))
        if unknown:
            raise UsageError(f"unknown domain {unknown[0]!r}; valid: {', '.join(DOMAINS)}")
        if not 1 <= self.depth_min <= self.depth_max <= 6:
            raise UsageError(f"need 1 <= depth_min <= depth_max <= 6, got {self.depth_min}..{self.depth_max}")
        if not 1 <= self.num_min <= self.num_max:
            raise UsageError(f"need 1 <= num_min <= num_max, got {self.num_min}..{self.num_max}")


PRESETS: dict[str, dict] = {
    "default": {},
    "small": {"train_size": 400, "validation_size": 100, "test_size": 200},
    "hard": {"depth_min": 4, "depth_max": 6, "branching": 2, "shuffle_story": True},
    "deep": {"depth_min": 5, "depth_max": 6},
    "shallow": {"depth_min": 1, "depth_max": 3},
    "bench": {"depth_min": 3, "depth_max": 5, "branching": 1},  # where RL neither saturates nor starves
}


def stated_quantities(context: str) -> dict[str, int]:
    """The quantities a story states outright ("Mia has 11 apples .") by name: what a solver may look up.

    >>> stated_quantities("Mia has 11 apples . Tia has 2 apples . Compared to Mia , Wes has 12 more apples .")
    {'Mia': 11, 'Tia': 2}
    """
    found = {}
    for pattern in _STATED:
        found.update((name, int(k)) for name, k in pattern.findall(context))
    return found


def _apply(op: str, value: int, k: int) -> int:
    return {"add": value + k, "sub": value - k, "mul": value * k}[op]


def _relation(rng: random.Random, cfg: WorldConfig, value: int) -> tuple[str, int]:
    """A random operation that keeps the child's value in [1, value_cap]."""
    options = []
    k = rng.randint(cfg.num_min, cfg.num_max)
    if value + k <= cfg.value_cap:
        options.append(("add", k))
    if value - k >= 1:
        options.append(("sub", k))
    m = rng.choice((2, 3))
    if value * m <= cfg.value_cap:
        options.append(("mul", m))
    return rng.choice(options) if options else ("sub", 1) if value > 1 else ("add", 1)


def make_problem(rng: random.Random, cfg: WorldConfig, domain: Domain, depth: int) -> dict:
    """One problem: a chain root -> ... -> target of ``depth`` relations, plus distractors."""
    unit = rng.choice(domain.units)
    names = rng.sample(domain.entities, depth + 1 + cfg.distractors + cfg.branching)
    chain, others = names[: depth + 1], names[depth + 1 :]
    nodes: dict[str, dict] = {}
    sentences: list[str] = []
    value = rng.randint(cfg.num_min, cfg.num_max)
    nodes[chain[0]] = {"parent": None, "op": None, "k": value, "value": value}
    sentences.append(domain.given.format(e=chain[0], k=value, u=unit))
    for parent, child in zip(chain, chain[1:]):
        op, k = _relation(rng, cfg, nodes[parent]["value"])
        nodes[child] = {"parent": parent, "op": op, "k": k, "value": _apply(op, nodes[parent]["value"], k)}
        sentences.append(domain.relation(op, k).format(e=child, p=parent, k=k, u=unit))
    for name in others[: cfg.distractors]:
        value = rng.randint(cfg.num_min, cfg.num_max)
        nodes[name] = {"parent": None, "op": None, "k": value, "value": value}
        sentences.insert(rng.randint(0, len(sentences)), domain.given.format(e=name, k=value, u=unit))
    for name in others[cfg.distractors :]:
        parent = rng.choice(chain[:-1])
        op, k = _relation(rng, cfg, nodes[parent]["value"])
        nodes[name] = {"parent": parent, "op": op, "k": k, "value": _apply(op, nodes[parent]["value"], k)}
        at = sentences.index(next(s for s in sentences if f" {parent} " in f" {s} ")) + 1
        sentences.insert(rng.randint(at, len(sentences)), domain.relation(op, k).format(e=name, p=parent, k=k, u=unit))
    if cfg.shuffle_story:
        rng.shuffle(sentences)
    target = chain[-1]
    return {
        "domain": domain.name,
        "context": " ".join(sentences),
        "question": domain.question.format(e=target, u=unit),
        "answer": str(nodes[target]["value"]),
        "subquestions": [domain.question.format(e=e, u=unit) for e in chain[1:-1]],
        "depth": depth,
        "metric": "numeric",
        "graph": json.dumps({"unit": unit, "target": target, "chain": chain, "nodes": nodes}, sort_keys=True),
    }


def generate(cfg: WorldConfig) -> DatasetDict:
    """Build train/validation/test; same config -> byte-identical data, no problem shared between splits."""
    seen: set[tuple[str, str]] = set()
    splits = {}
    for split, size in (("train", cfg.train_size), ("validation", cfg.validation_size), ("test", cfg.test_size)):
        rng = random.Random(f"{cfg.seed}:{split}")
        rows: list[dict] = []
        while len(rows) < size:
            domain = DOMAINS[cfg.domains[len(rows) % len(cfg.domains)]]
            problem = make_problem(rng, cfg, domain, rng.randint(cfg.depth_min, cfg.depth_max))
            key = (problem["context"], problem["question"])
            if key in seen:
                continue
            seen.add(key)
            rows.append({"id": f"{split}-{len(rows):05d}", **problem})
        fingerprint = hashlib.sha256(json.dumps([asdict(cfg), split]).encode()).hexdigest()[:16]
        ds = Dataset.from_dict({k: [r[k] for r in rows] for k in FEATURES}, features=FEATURES)
        ds._fingerprint = fingerprint  # from_list draws a random one; state.json must not differ between runs
        splits[split] = ds
    return DatasetDict(splits)


def dataset(preset: str = "default") -> DatasetDict:
    """The registry's ``world`` / ``world:PRESET``: the world generated on the fly, deterministically."""
    return generate(world_config(preset))


def world_config(preset: str = "default", **overrides) -> WorldConfig:
    if preset not in PRESETS:
        raise UsageError(f"unknown world preset {preset!r}; valid: {', '.join(PRESETS)}")
    return WorldConfig(**{**PRESETS[preset], **overrides})
