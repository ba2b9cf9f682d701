"""RFT's filter and pass@k: what is kept and what is counted, on samples fixed by hand (answers known) and on the
tiny decomposer's own samples, re-solved by a solver of their own."""

import json

import pytest

from rlrefine.core.format import decomposer_messages, parse, render
from rlrefine.core.grading import grade
from rlrefine.core.protocols import Completion
from rlrefine.evaluation.evaluate import pass_at_k
from rlrefine.solvers.symbolic import SymbolicSolver
from rlrefine.training.rft import collect


class Scripted:
    """A decomposer whose samples are fixed by hand (row id -> k completions): the filter's input, known exactly."""

    name, price_key = "scripted", "student"

    def __init__(self, samples: dict[str, list[Completion]]) -> None:
        self.samples = samples

    def decompose(self, rows):
        raise AssertionError("only sampled here")

    def sample(self, rows, n, temperature=1.0, seed=None):
        assert all(len(self.samples[r["id"]]) == n for r in rows)
        return [self.samples[r["id"]] for r in rows]


def _question(graph: dict, entity: str, wording: str = "How many {u} does {e} have ?") -> str:
    return wording.format(u=graph["unit"], e=entity)


@pytest.fixture(scope="module")
def hand_made(test_rows):
    """Three depth-3 problems (root -> a -> b -> asked) and six samples each. For hops=1 the oracle [a, b] is right;
    so is the same chain in other words, and with '? ?' padding (right, but not well formed); [b] alone (merged
    hops) and no decomposition are wrong. The second problem has no graph: the solver fails on all its samples."""
    first, second, third = [dict(r) for r in test_rows if r["depth"] == 3 and r["domain"] == "marbles"][:3]
    texts = {}
    for row in (first, second, third):
        graph = json.loads(row["graph"])
        a, b = graph["chain"][1:3]
        texts[row["id"]] = {
            "oracle": render([_question(graph, a), _question(graph, b)]),
            "reworded": render([_question(graph, a, "What is {e}'s count ?"), _question(graph, b, "And {e} ?")]),
            "padded": render([_question(graph, a), _question(graph, b) + " ? ?"]),
            "merged": render([_question(graph, b)]),
            "none": "No decomposition .",
        }
    second["graph"] = ""
    t1, t2, t3 = (texts[r["id"]] for r in (first, second, third))
    done, cut = (lambda t: Completion(t)), (lambda t: Completion(t, finished=False))
    samples = {
        first["id"]: [done(t1["oracle"]), done(t1["oracle"]), cut(t1["reworded"]), done(t1["merged"])]
        + [done(t1["padded"]), done(t1["none"])],
        second["id"]: [done(t2["oracle"])] * 6,
        third["id"]: [done(t3["oracle"]), done(t3["reworded"]), done(t3["oracle"]), done(t3["merged"])]
        + [done(t3["oracle"]), done(t3["reworded"])],
    }
    return [first, second, third], texts, Scripted(samples)


def test_hand_made_samples_are_what_they_claim(hand_made):
    """The fixture's premises, checked with a solver of the test's own: what is right, what is well formed."""
    rows, texts, _ = hand_made
    solver = SymbolicSolver(hops=1)
    for row in (rows[0], rows[2]):
        t = texts[row["id"]]
        answers = {k: solver.solve([row], [parse(v).subquestions])[0].answer for k, v in t.items()}
        assert {k for k, a in answers.items() if a == row["answer"]} == {"oracle", "reworded", "padded"}
        assert {k for k, v in t.items() if parse(v).valid} == {"oracle", "reworded", "merged", "none"}
    assert solver.solve([rows[1]], [parse(texts[rows[1]["id"]]["oracle"]).subquestions])[0].error


def test_rft_keeps_each_finished_valid_correct_decomposition_once_and_nothing_else(hand_made):
    rows, texts, model = hand_made
    kept, stats = collect(model, rows, "hops=1", k=6, seed=0)
    first, _, third = rows
    expected = [(first, texts[first["id"]]["oracle"])]  # not the cut-off, the merged, the padded or the repeat
    expected += [(third, texts[third["id"]]["oracle"]), (third, texts[third["id"]]["reworded"])]  # both, once each
    assert kept == [
        {
            "prompt": decomposer_messages(row["context"], row["question"], ""),
            "completion": [{"role": "assistant", "content": text}],
        }
        for row, text in expected
    ]
    assert stats == {"problems": 3, "pass_at_k": 2 / 3, "kept": 3}


def test_pass_at_k_on_hand_made_samples(hand_made):
    rows, texts, model = hand_made
    found = pass_at_k(model, rows, "hops=1", k=6)
    # right: problem 1 oracle x2, reworded (cut off, but the solver was right), padded; problem 3 oracle x3,
    # reworded x2; problem 2 never (its solver failed: 6 samples with no score, not 6 wrong ones): 9 of the 12 scored
    # samples, 2 of 3 problems
    assert found["pass_at_k"] == pytest.approx(2 / 3) and found["sampled_accuracy"] == pytest.approx(9 / 12)
    assert found["errors"] == 6
    counts = [2, 2, 2, 1, 2, 0] + [2] * 6 + [2, 2, 2, 1, 2, 2]
    assert found["mean_subquestions"] == pytest.approx(sum(counts) / 18) and found["k"] == 6


@pytest.mark.parametrize("decomposer", ["oracle", "teacher", "none"])
def test_pass_at_k_refuses_a_decomposer_that_cannot_sample(test_rows, decomposer):
    with pytest.raises(ValueError, match=f"pass@k needs a model decomposer that samples, got '{decomposer}"):
        pass_at_k(decomposer, test_rows[:4], "hops=1")


def test_pass_at_k_bounds_and_pass_at_1_on_the_tiny_decomposer(tiny_decomposer, test_rows):
    rows = test_rows[:24]
    at4 = pass_at_k(str(tiny_decomposer), rows, "hops=1", k=4, seed=3)
    assert 0.0 <= at4["sampled_accuracy"] <= at4["pass_at_k"] <= 1.0
    assert at4 == pass_at_k(str(tiny_decomposer), rows, "hops=1", k=4, seed=3)  # a seed fixes the samples
    at1 = pass_at_k(str(tiny_decomposer), rows, "hops=1", k=1, seed=3)
    assert at1["pass_at_k"] == at1["sampled_accuracy"]
    assert 0.0 < at4["pass_at_k"] < 1.0  # the tiny decomposer is sometimes right: the bounds were not trivial


def test_what_rft_keeps_from_the_tiny_decomposer_is_right_when_solved_again(tiny_decomposer, world):
    rows = list(world["train"])[:64]  # 512 samples: most are not well formed, a few are kept
    kept, stats = collect(tiny_decomposer, rows, "hops=1", k=8, seed=0)
    assert kept and stats["kept"] == len(kept) <= 4 * len(rows)
    by_prompt = {json.dumps(decomposer_messages(r["context"], r["question"], "")): r for r in rows}
    solver = SymbolicSolver(hops=1)  # not the shared, memoised one the filter used
    pairs = [(json.dumps(ex["prompt"]), ex["completion"][0]["content"]) for ex in kept]
    assert len(set(pairs)) == len(pairs)  # never the same decomposition twice for one problem
    for prompt, text in pairs:
        row, parsed = by_prompt[prompt], parse(text)
        assert parsed.valid, text
        assert grade(solver.solve([row], [parsed.subquestions])[0].answer, row["answer"]) == 1.0, text
    solved = {prompt for prompt, _ in pairs}
    assert stats["pass_at_k"] >= len(solved) / len(rows)


def test_rft_keeps_what_the_runs_cap_allows_not_the_papers_three(world):
    """A depth-5 problem needs four sub-questions with hops=1: RFT keeps the oracle's four when the run's format
    reward lifts the cap (``cap: null`` or 4), never under the paper's three; and it samples as long as it is told."""
    from rlrefine.data import load_split
    from rlrefine.training.settings import subquestion_cap

    row = next(dict(r) for r in load_split("world:bench", "test", 200) if r["depth"] == 5)
    graph = json.loads(row["graph"])
    four = render([_question(graph, e) for e in graph["chain"][1:-1]])
    assert parse(four).count == 4 and not parse(four).valid and parse(four, None).valid
    model = Scripted({row["id"]: [Completion(four)]})
    by_cap = {cap: collect(model, [row], "hops=1", k=1, seed=0, cap=cap)[1]["kept"] for cap in (3, 4, None)}
    assert by_cap == {3: 0, 4: 1, None: 1}

    assert subquestion_cap([{"name": "solver"}, {"name": "format", "weight": 0.1}]) == 3  # the default rewards
    assert subquestion_cap(["solver", "{name: format, cap: null}"]) is None
    assert subquestion_cap([{"name": "format", "cap": 5}]) == 5
    assert subquestion_cap([{"name": "solver"}]) is None  # no reward limits the count: neither does RFT


def test_rft_samples_up_to_its_max_completion_length(tiny_decomposer, world):
    """RFT's sampling length is a setting (GRPO's name), 64 by default; it reaches the sampler."""
    from rlrefine.training.settings import parse_pipeline

    assert parse_pipeline(["--algorithm", "rft"])[1].max_completion_length == 64  # what README's RFT rows used
    assert parse_pipeline(["--algorithm", "rft", "--max_completion_length", "48"])[1].max_completion_length == 48
    rows = list(world["train"])[:64]  # the rows and samples of the test above, where some are kept at 64 tokens
    kept, stats = collect(tiny_decomposer, rows, "hops=1", k=8, seed=0, max_tokens=3)
    assert kept == [] and stats["pass_at_k"] == 0  # at three tokens no decomposition ends, so none is kept
