import json

import pytest

from rlrefine.core.format import parse
from rlrefine.decomposers import make_decomposer
from rlrefine.decomposers.teacher import FlawedTeacher

CLEAN = dict(merge=0.0, misorder=0.0, redundant=0.0, irrelevant=0.0)


def _entities(teacher, rows):
    return [teacher.entities(r) for r in rows]


def test_clean_teacher_is_the_oracle(test_rows):
    teacher = FlawedTeacher(**CLEAN)
    oracle = make_decomposer("oracle")
    assert [d.text for d in teacher.decompose(test_rows)] == [d.text for d in oracle.decompose(test_rows)]


def test_merge_writes_for_a_two_hop_solver(test_rows):
    for row, asks in zip(test_rows, _entities(FlawedTeacher(**{**CLEAN, "merge": 1.0}), test_rows)):
        chain = json.loads(row["graph"])["chain"]
        assert asks == chain[2:-1:2]
        positions = [0] + [chain.index(a) for a in asks] + [len(chain) - 1]
        assert all(b - a <= 2 for a, b in zip(positions, positions[1:]))


def test_each_flaw_does_what_it_claims(test_rows):
    rows = [r for r in test_rows if r["depth"] == 4]
    gold = [json.loads(r["graph"])["chain"][1:-1] for r in rows]
    mis = _entities(FlawedTeacher(**{**CLEAN, "misorder": 1.0}), rows)
    assert all(sorted(m) == sorted(g) and m != g for m, g in zip(mis, gold))
    red = _entities(FlawedTeacher(**{**CLEAN, "redundant": 1.0, "cap": 9}), rows)
    assert all(len(r) == len(g) + 1 and len(set(r)) == len(g) for r, g in zip(red, gold))
    irr = _entities(FlawedTeacher(**{**CLEAN, "irrelevant": 1.0, "cap": 9}), rows)
    for r, g, row in zip(irr, gold, rows):
        extra = [e for e in r if e not in g]
        assert len(extra) == 1 and extra[0] not in json.loads(row["graph"])["chain"]
    capped = FlawedTeacher(**{**CLEAN, "redundant": 1.0}).decompose(rows)
    assert all(parse(d.text).count == 3 for d in capped)


def test_flaws_fire_at_their_rate(world):
    rows = list(world["train"])
    merged = sum(
        a == json.loads(r["graph"])["chain"][2:-1:2] != json.loads(r["graph"])["chain"][1:-1]
        for a, r in zip(_entities(FlawedTeacher(**{**CLEAN, "merge": 0.5}), rows), rows)
        if r["depth"] >= 3
    )
    eligible = sum(r["depth"] >= 3 for r in rows)
    assert 0.4 < merged / eligible < 0.6


def test_teacher_is_deterministic_and_seeded(test_rows):
    a = [d.text for d in make_decomposer("teacher").decompose(test_rows)]
    assert a == [d.text for d in make_decomposer("teacher").decompose(test_rows)]
    assert a != [d.text for d in make_decomposer("teacher:seed=1").decompose(test_rows)]


def test_teacher_settings_and_name():
    teacher = make_decomposer("teacher:merge=0.2,cap=2")
    assert (teacher.merge, teacher.cap, teacher.name) == (0.2, 2, "teacher:merge=0.2,cap=2")
    assert make_decomposer({"name": "teacher", "cap": 2, "merge": 0.2}).name == teacher.name  # however it is spelled
    uncapped = make_decomposer("teacher:cap=null,redundant=1")  # no cap (the sub-question cap ablation)
    assert (uncapped.cap, uncapped.name) == (None, "teacher:redundant=1,cap=null")
    assert make_decomposer("teacher:merge=0.5").name == "teacher"  # the defaults are not part of the name


def test_teacher_on_data_that_is_not_the_world_says_so():
    row = {"id": "gsm-1", "context": "", "question": "How many eggs ?", "answer": "3", "domain": "", "graph": ""}
    with pytest.raises(ValueError, match="flawed teacher needs world problems.*gsm-1 has none"):
        make_decomposer("teacher").decompose([row])
