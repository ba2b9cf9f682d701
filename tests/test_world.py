import filecmp
import json

import pytest

from rlrefine.data.world import DOMAINS, WorldConfig, generate, world_config


def _tree_equal(a, b) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(_tree_equal(f"{a}/{d}", f"{b}/{d}") for d in cmp.common_dirs) and all(
        filecmp.cmp(f"{a}/{f}", f"{b}/{f}", shallow=False) for f in cmp.common_files
    )


def test_same_seed_gives_byte_identical_data(tmp_path):
    cfg = world_config("small")
    generate(cfg).save_to_disk(tmp_path / "a")
    generate(world_config("small")).save_to_disk(tmp_path / "b")
    assert _tree_equal(tmp_path / "a", tmp_path / "b")
    generate(world_config("small", seed=1)).save_to_disk(tmp_path / "c")
    assert not _tree_equal(tmp_path / "a", tmp_path / "c")


def test_splits_are_disjoint(world):
    keys = {split: {(r["context"], r["question"]) for r in world[split]} for split in world}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]


def test_answers_follow_the_graph(test_rows):
    ops = {"add": lambda v, k: v + k, "sub": lambda v, k: v - k, "mul": lambda v, k: v * k}
    for row in test_rows:
        graph = json.loads(row["graph"])
        value = None
        for name in graph["chain"]:
            node = graph["nodes"][name]
            value = node["k"] if node["parent"] is None else ops[node["op"]](value, node["k"])
            assert value == node["value"] and 1 <= value <= 400
        assert str(value) == row["answer"]
        assert len(row["subquestions"]) == row["depth"] - 1 == len(graph["chain"]) - 2
        assert all(name in row["context"] for name in graph["nodes"])


def test_parent_name_sits_right_before_child(test_rows):
    """The wording that makes a tiny decomposer's job local (#2: learnability)."""
    for row in test_rows[:50]:
        graph = json.loads(row["graph"])
        for parent, child in zip(graph["chain"], graph["chain"][1:]):
            assert f"{parent} , {child}" in row["context"] or f"{parent} , the {child}" in row["context"]


def test_knobs():
    cfg = world_config("small", depth_min=5, depth_max=6, distractors=3, branching=2, domains=["money"])
    rows = list(generate(cfg)["test"])
    assert {r["depth"] for r in rows} == {5, 6}
    assert {r["domain"] for r in rows} == {"money"}
    for r in rows[:20]:
        nodes = json.loads(r["graph"])["nodes"]
        assert len(nodes) == r["depth"] + 1 + 3 + 2
    big = list(generate(world_config("small", num_min=50, num_max=60))["test"])
    assert all(50 <= json.loads(r["graph"])["nodes"][json.loads(r["graph"])["chain"][0]]["k"] <= 60 for r in big)


def test_domains_have_disjoint_vocabulary():
    a, b = DOMAINS["marbles"], DOMAINS["money"]
    words = lambda d: set(" ".join([*d.entities, *d.units, d.given, d.add, d.sub, *d.mul.values(), d.question]).split())  # noqa: E731
    shared = words(a) & words(b)
    assert shared <= {"{e}", "{k}", "{u}", "{p}", ",", ".", "?", "How", "many"}, shared


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"domains": ["space"]}, "unknown domain 'space'; valid: marbles, money"),
        ({"depth_min": 3, "depth_max": 7}, "depth"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WorldConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown world preset 'nope'; valid: default"):
        world_config("nope")


def test_deep_presets_are_solvable_with_their_oracle():
    """Depth 5-6 needs more sub-questions than the paper's cap of three: named by the parser, not cut."""
    from rlrefine.data import load_split
    from rlrefine.evaluation.evaluate import evaluate

    rows = list(load_split("world:deep", "test", 40))
    cell = evaluate(rows, ["oracle"], ["hops=1"], progress=False)["cells"][0]
    assert cell["accuracy"] == 1.0 and cell["mean_subquestions"] > 3
