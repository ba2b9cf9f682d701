"""Dynamic decomposition (rlrefine.evaluation.dynamic): the loop shows the decomposer the solver's own answers, stops on the
marker, a repeat or the cap, counts every round's tokens, and turns failures into error results; evaluation runs it
as rows of their own, cached under a key of their own."""

import json

import pytest

from rlrefine.core.format import MAX_SUBQUESTIONS, NO_DECOMPOSITION, parse
from rlrefine.core.protocols import Decomposed, DynamicDecomposer, SolveResult, UsageError
from rlrefine.decomposers import make_decomposer
from rlrefine.evaluation.dynamic import check_modes, solve_dynamic
from rlrefine.evaluation.evaluate import evaluate
from rlrefine.solvers import make_solver


class Scripted:
    """A decomposer that replies from a script (problem id -> its replies, one per round), records what it was shown
    and charges 10 prompt and 2 completion tokens a reply. Problems without a script say the marker."""

    name, price_key = "scripted", "student"

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.script, self.shown, self.calls = script, [], []

    def decompose(self, rows):
        return [Decomposed(NO_DECOMPOSITION) for _ in rows]

    def next_subquestion(self, rows, histories):
        self.calls.append(len(rows))
        out = []
        for row, history in zip(rows, histories):
            self.shown.append((row["id"], list(history)))
            replies = self.script.get(row["id"], [])
            out.append(Decomposed(replies[len(history)] if len(history) < len(replies) else NO_DECOMPOSITION, 10, 2))
        return out


class Failing:
    """A solver that fails on the problems named, as a remote solver times out: the whole batch raises."""

    name, price_key = "failing", "solver"

    def __init__(self, ids=None) -> None:
        self.ids, self.inner = ids, make_solver("hops=1")

    def solve(self, rows, subquestions):
        if self.ids is None or any(r["id"] in self.ids for r in rows):
            raise TimeoutError("the solver timed out")
        return self.inner.solve(rows, subquestions)


def _gold(rows, depth):
    return [r for r in rows if r["depth"] == depth][:4]


def test_the_decomposer_sees_the_solvers_own_answers(test_rows):
    rows = _gold(test_rows, 3)
    script = {r["id"]: [f"Q1: {r['subquestions'][0]}", f"Q2: {r['subquestions'][1]}"] for r in rows}
    decomposer, solver = Scripted(script), make_solver("hops=1")
    decomposed, results = solve_dynamic(decomposer, solver, rows)
    assert isinstance(decomposer, DynamicDecomposer)
    by_id = {r["id"]: r for r in rows}
    seen = [(i, h) for i, h in decomposer.shown if h]
    assert seen, "the decomposer was never shown an answer"
    for problem, history in seen:
        for k in range(1, len(history) + 1):
            asked = [q for q, _ in history[:k]]
            expected = solver.solve([by_id[problem]], [asked])[0].trace[-1]["answer"]
            assert history[k - 1] == (asked[-1], expected)
    assert decomposer.calls == [4, 4, 4]  # one batched call per round; the third round says the marker
    static = solver.solve(rows, [r["subquestions"] for r in rows])
    assert [r.answer for r in results] == [r.answer for r in static]  # the final answer: the solver's on the list
    assert [d.text.splitlines() for d in decomposed] == [s for s in script.values()]


def test_an_unknown_answer_is_shown_as_none_and_said_unknown(test_rows):
    from rlrefine.core.format import dynamic_messages

    row = _gold(test_rows, 3)[0]
    decomposer = Scripted({row["id"]: [f"Q1: {row['subquestions'][1]}"]})  # two hops away: hops=1 cannot answer
    solve_dynamic(decomposer, make_solver("hops=1"), [row])
    assert decomposer.shown[-1][1] == [(row["subquestions"][1], None)]
    assert "A1: unknown" in dynamic_messages("", "Q?", decomposer.shown[-1][1], "")[-1]["content"]


def test_it_stops_on_the_marker_a_repeat_no_subquestion_and_the_cap(test_rows):
    rows = _gold(test_rows, 4)
    q = [f"Q{k + 1}: {s}" for k, s in enumerate(rows[0]["subquestions"])]
    script = {
        rows[0]["id"]: q + ["Q4: How many marbles ?"],  # three and more: the cap ends it after three
        rows[1]["id"]: [q[0], NO_DECOMPOSITION],  # the marker
        rows[2]["id"]: [q[0], q[0]],  # a repeat
        rows[3]["id"]: ["To solve this we think hard", "Q1: never asked ?"],  # no sub-question: malformed, not a crash
    }
    decomposer = Scripted(script)
    decomposed, results = solve_dynamic(decomposer, make_solver("hops=1"), rows)
    assert [len(d.text.splitlines()) for d in decomposed[:3]] == [MAX_SUBQUESTIONS, 1, 1]
    prose = script[rows[3]["id"]][0]  # judged and solved as a static decomposer's prose would be
    assert decomposed[3].text == prose and not parse(prose).valid
    assert results[3] == make_solver("hops=1").solve([rows[3]], [[prose]])[0]
    assert decomposer.calls == [4, 3, 1]  # problems drop out of the batch as they stop
    capped, _ = solve_dynamic(Scripted(script), make_solver("hops=1"), rows[:1], max_rounds=2)
    assert len(capped[0].text.splitlines()) == 2


@pytest.mark.parametrize(
    ("closing", "text"),
    [
        (NO_DECOMPOSITION, "Q1: {q}"),  # the marker: the sub-questions asked, in the format
        ("  ", "Q1: {q}"),  # nothing: a stop, as the marker
        ("So the answer is 12", "Q1: {q}\nSo the answer is 12"),  # prose: the format's to judge, the solver's to read
        ("Q1: {q}", "Q1: {q}"),  # a repeat asks nothing new
    ],
)
def test_a_dialogue_is_the_decomposition_its_decomposer_wrote_and_the_solver_answers_that(test_rows, closing, text):
    """What the rewards, the format and evaluation's ``valid_format`` see is the dialogue as written; the final
    answer is the solver's on that decomposition, as a static decomposer's would be."""
    row = _gold(test_rows, 3)[0]
    q = row["subquestions"][0]
    solver = make_solver("hops=1")
    decomposed, results = solve_dynamic(Scripted({row["id"]: [f"Q1: {q}", closing.format(q=q)]}), solver, [row])
    assert decomposed[0].text == text.format(q=q)
    assert parse(decomposed[0].text).valid == ("answer" not in text)
    assert results[0].answer == solver.solve([row], [list(parse(decomposed[0].text).subquestions)])[0].answer
    empty, direct = solve_dynamic(Scripted({row["id"]: [""]}), solver, [row])  # nothing at all: no decomposition
    assert empty[0].text == "" and parse("").problems == ("empty",) and direct[0] == solver.solve([row], [[]])[0]


def test_tokens_are_summed_over_every_round(test_rows):
    rows = _gold(test_rows, 3)
    solver = make_solver("hops=1")
    script = {r["id"]: [f"Q1: {r['subquestions'][0]}", f"Q2: {r['subquestions'][1]}"] for r in rows}
    decomposed, results = solve_dynamic(Scripted(script), solver, rows)
    assert all((d.prompt_tokens, d.completion_tokens) == (30, 6) for d in decomposed)  # three calls each
    for row, result in zip(rows, results):
        calls = [solver.solve([row], [row["subquestions"][:k]])[0] for k in (1, 2)]
        assert result.prompt_tokens == sum(c.prompt_tokens for c in calls)
        assert result.completion_tokens == sum(c.completion_tokens for c in calls)
        assert result.prompt_tokens > calls[-1].prompt_tokens  # dearer than one static solve of the same list


def test_a_failing_solver_or_decomposer_gives_error_results_not_a_crash(test_rows):
    rows = _gold(test_rows, 3)
    script = {r["id"]: [f"Q1: {r['subquestions'][0]}"] for r in rows}
    _, results = solve_dynamic(Scripted(script), Failing(), rows)
    assert all(r.error == "TimeoutError: the solver timed out" and r.answer is None for r in results)

    class Broken(Scripted):
        def next_subquestion(self, rows, histories):
            if histories[0]:
                raise ConnectionError("the endpoint went away")
            return super().next_subquestion(rows, histories)

    decomposed, results = solve_dynamic(Broken(script), make_solver("hops=1"), rows)
    assert all(r.error == "decomposer: ConnectionError: the endpoint went away" for r in results)
    assert all(d.error == "ConnectionError: the endpoint went away" for d in decomposed)


def test_teacher_and_oracle_step_through_their_static_lists(test_rows):
    rows = test_rows[:60]
    solver = make_solver("hops=2")
    for spec in ("oracle", "teacher", "teacher:redundant=0,seed=3"):
        decomposer = make_decomposer(spec)
        static = [d.text for d in decomposer.decompose(rows)]
        dynamic, _ = solve_dynamic(decomposer, solver, rows)
        for s, d in zip(static, dynamic):
            lines = s.splitlines() if s != NO_DECOMPOSITION else []
            kept = lines[: next((i for i in range(1, len(lines)) if lines[i][4:] in [x[4:] for x in lines[:i]]), None)]
            assert d.text == ("\n".join(kept) if kept else NO_DECOMPOSITION), spec  # up to a repeat, which ends it
        assert solve_dynamic(decomposer, solver, rows)[0] == dynamic  # deterministic


def test_a_decomposer_without_a_dynamic_mode_is_refused_by_name(test_rows):
    class StaticOnly:
        name, price_key = "static-only", "student"

        def decompose(self, rows):
            return [Decomposed(NO_DECOMPOSITION) for _ in rows]

    with pytest.raises(UsageError, match="'static-only' has no dynamic mode.*these do: none, oracle, teacher"):
        solve_dynamic(StaticOnly(), make_solver("hops=1"), test_rows[:2])
    with pytest.raises(UsageError, match="has no dynamic mode"):
        evaluate(test_rows[:5], [StaticOnly()], ["hops=1"], progress=False, modes=["dynamic"])
    results = evaluate(test_rows[:5], [StaticOnly()], ["hops=1"], progress=False, modes=["dynamic"], skip_unfit=True)
    assert results["cells"] == [] and "left out of dynamic mode" in results["notes"][0]
    with pytest.raises(UsageError, match="unknown evaluation mode.*'dynamc'; valid: static, dynamic"):
        check_modes(["dynamc"])


def test_evaluation_reports_dynamic_rows_and_caches_them(test_rows, tmp_path):
    rows = test_rows[:40]
    static = evaluate(rows, ["oracle", "teacher"], ["hops=1"], tmp_path / "a", progress=False)
    both = evaluate(
        rows, ["oracle", "teacher"], ["hops=1"], tmp_path / "b", progress=False, modes=["static", "dynamic"]
    )
    names = [c["decomposer"] for c in both["cells"]]
    assert names == ["oracle", "oracle (dynamic)", "teacher", "teacher (dynamic)"]
    assert [c for c in both["cells"] if "mode" not in c] == static["cells"]  # static cells as before, byte for byte
    cells = {c["decomposer"]: c for c in both["cells"]}
    assert cells["oracle (dynamic)"]["accuracy"] == 1.0 and cells["oracle (dynamic)"]["mode"] == "dynamic"
    for name in ("oracle", "teacher"):
        dyn, st = cells[f"{name} (dynamic)"]["tokens"], cells[name]["tokens"]
        assert dyn["decomposer_in"] > st["decomposer_in"] and dyn["solver_in"] > st["solver_in"]
    assert "| teacher (dynamic) |" in (tmp_path / "b" / "results.md").read_text()
    cached = sorted((tmp_path / "b" / "cache").rglob("*__dynamic-*.json"))
    assert len(cached) == 2
    cell = json.loads(cached[0].read_text())
    cell["accuracy"] = -1.0  # a marker: a second evaluation reads the dynamic cell back
    cached[0].write_text(json.dumps(cell))
    again = evaluate(rows, ["oracle", "teacher"], ["hops=1"], tmp_path / "b", progress=False, modes=["dynamic"])
    assert -1.0 in [c["accuracy"] for c in again["cells"]] and len(again["cells"]) == 2


def test_a_model_decomposer_runs_dynamic_mode_batched(tiny_model_dir, test_rows):
    decomposer = make_decomposer(f"tiny={tiny_model_dir}")
    engine, conversations = decomposer.engine, []
    chat = engine.chat

    def counted(batch):  # the real engine, counting its calls: one per round, every active problem in it
        conversations.append(list(batch))
        return chat(batch)

    engine.chat = counted
    rows = _gold(test_rows, 3)
    histories = [[(r["subquestions"][0], "7"), (r["subquestions"][1], None)] for r in rows]
    replies = decomposer.next_subquestion(rows, histories)
    assert len(conversations) == 1 and len(conversations[0]) == len(rows) and len(replies) == len(rows)
    roles = [m["role"] for m in conversations[0][0]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert conversations[0][0][2]["content"].startswith("A1: 7\nWrite Q2:")
    assert conversations[0][0][4]["content"].startswith("A2: unknown\nWrite Q3:")
    static = decomposer.decompose(rows[:1])[0]
    assert replies[0].prompt_tokens > static.prompt_tokens  # the conversation grows with every step
    conversations.clear()
    decomposed, results = solve_dynamic(decomposer, make_solver("hops=1"), rows)
    assert 1 <= len(conversations) <= MAX_SUBQUESTIONS and len(conversations[0]) == len(rows)
    assert all(isinstance(r, SolveResult) and r.error is None for r in results)
    assert all(d.prompt_tokens > 0 for d in decomposed)


def test_the_eval_command_and_the_pipeline_take_the_modes(world_dir, tmp_path):
    from rlrefine.commands.cli import main
    from rlrefine.training.settings import parse_pipeline, preflight

    out = tmp_path / "eval"
    argv = ["eval", "--data", str(world_dir), "--limit", "20", "--decomposers", "oracle", "--solvers", "hops=1"]
    assert main([*argv, "--modes", "static", "dynamic", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [c["decomposer"] for c in results["cells"]] == ["oracle", "oracle (dynamic)"]
    assert main([*argv, "--modes", "dynamc", "--out", str(out)]) == 2
    args = parse_pipeline(["--data", "world:small", "--eval_modes", "static", "dynamic"])[0]
    assert args.eval_modes == ["static", "dynamic"] and parse_pipeline([])[0].eval_modes == ["static"]
    args.eval_modes = ["sttic"]
    with pytest.raises(UsageError, match="unknown evaluation mode"):
        preflight(args)
