"""Real datasets: GSM8K from the shared files (skipped when absent) and from a few-row copy of its format in
tests/data (never skipped), DROP and Bamboogle from local files in the hub's schema or ours, the hub ids the loaders ask
for, eval and teach on each, and rows with a missing field failing by row and field name."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import ROOT

from rlrefine.commands.cli import main
from rlrefine.core.atomic import read_jsonl
from rlrefine.core.format import parse
from rlrefine.core.grading import extract_answer, grade
from rlrefine.core.numeric import parse_number
from rlrefine.core.protocols import UsageError
from rlrefine.data import load_split, load_splits
from rlrefine.data.real import gsm8k_answer
from rlrefine.decomposers import make_decomposer

DATA = ROOT / "tests" / "data"  # a few rows of each real dataset's file format, written for the tests
ECHO = f"{ROOT / 'tests' / 'plugins' / 'echo_solver.py'}:Echo"
GSM8K = Path(os.environ.get("RLREFINE_GSM8K_DIR") or ROOT.parent / "shared" / "data" / "gsm8k")
GSM8K_FILES = ("train.jsonl", "test.jsonl", "test_socratic.jsonl")  # all, or the loader would go to the hub
needs_gsm8k = pytest.mark.skipif(
    not all((GSM8K / f).is_file() for f in GSM8K_FILES),
    reason=f"GSM8K files not found at {GSM8K} (set RLREFINE_GSM8K_DIR to a folder with {', '.join(GSM8K_FILES)})",
)


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
@needs_gsm8k
@pytest.mark.parametrize("split, n", [("test", 1319), ("train", 7473)])
def test_answer_extractor_agrees_with_gold_on_every_gsm8k_answer(split, n):
    raw = read_jsonl(GSM8K / f"{split}.jsonl")
    assert len(raw) == n
    loaded = load_split("gsm8k", split)
    assert len(loaded) == n and set(loaded["metric"]) == {"numeric"}
    for r, row in zip(raw, loaded):
        gold = Decimal(r["answer"].split("####")[-1].strip().replace(",", ""))
        assert parse_number(extract_answer(r["answer"])) == gold  # the extractor reads the gold solution
        assert Decimal(row["answer"]) == gold  # the loader's answer is that number
        assert grade(extract_answer(r["answer"]), row["answer"], "numeric") == 1.0
        solver_text = f"A1: something\nThe answer is: {r['answer'].split('####')[-1].strip()}."
        assert grade(extract_answer(solver_text), row["answer"], row["metric"]) == 1.0


@pytest.mark.slow
@needs_gsm8k
def test_gsm8k_socratic_subquestions_are_teacher_decompositions():
    test = load_split("gsm8k:socratic", "test")
    assert len(test) == 1319 and test["id"] == load_split("gsm8k", "test")["id"]
    assert all(row["subquestions"] for row in test)
    questions = [q for row in test for q in row["subquestions"]]
    assert sum(q.endswith("?") for q in questions) / len(questions) > 0.95  # a few steps are "Simplify" etc.
    texts = [d.text for d in make_decomposer("oracle").decompose(list(test))]
    assert [list(parse(t).subquestions) for t in texts] == test["subquestions"]
    assert test[1]["subquestions"] == [
        "How many bolts of white fiber does it take?",
        "How many bolts in total does it take?",
    ]


def test_gsm8k_from_a_folder_and_bad_rows(tmp_path):
    rows = read_jsonl(DATA / "gsm8k" / "test.jsonl")
    _write(tmp_path / "test.jsonl", rows)
    assert load_split(f"gsm8k:{tmp_path}", "test")["answer"] == [gsm8k_answer(r["answer"]) for r in rows]
    _write(tmp_path / "test.jsonl", [rows[0], {"question": rows[1]["question"], "answer": "no final line"}])
    with pytest.raises(ValueError, match=r"row 1 has no '####' final answer in field 'answer'"):
        load_splits(f"gsm8k:{tmp_path}")
    _write(tmp_path / "test.jsonl", [rows[0], {"answer": rows[1]["answer"]}])
    with pytest.raises(ValueError, match=r"row 1 is missing field 'question'"):
        load_splits(f"gsm8k:{tmp_path}")
    with pytest.raises(UsageError, match="no train.jsonl or test.jsonl"):
        load_splits(f"gsm8k:{tmp_path / 'nowhere'}")


def test_custom_jsonl_row_missing_a_field_names_row_and_field(tmp_path):
    path = _write(
        tmp_path / "custom.jsonl",
        [
            {"id": "a", "question": "How many ?", "answer": "3"},
            {"id": "b", "question": "How many more ?", "answer": "4"},
            {"id": "c", "question": "And now ?"},
        ],
    )
    with pytest.raises(ValueError, match=r"custom.jsonl line 3: missing field 'answer'$"):
        load_split(str(path))
    _write(path, [{"id": "a", "question": "  ", "answer": 0}])
    with pytest.raises(ValueError, match=r"custom.jsonl line 1: missing field 'question'$"):
        load_split(str(path))


def test_drop_local_files_in_hub_schema_and_ours(tmp_path):
    native = _write(
        tmp_path / "validation.jsonl",
        [
            {
                "section_id": "s1",
                "query_id": "q1",
                "passage": "The Raiders scored twice: Chaz Schilens and Zach Miller caught touchdowns.",
                "question": "Who caught touchdowns?",
                "answers_spans": {"spans": ["Chaz Schilens", "Zach Miller"], "types": ["span", "span"]},
            }
        ],
    )
    rows = load_splits(f"drop:{tmp_path}")["validation"]
    assert rows[0]["id"] == "q1" and rows[0]["metric"] == "f1" and rows[0]["context"].startswith("The Raiders")
    assert rows[0]["answer"] == "Chaz Schilens, Zach Miller"
    assert grade("Chaz Schilens", rows[0]["answer"], "f1") == pytest.approx(2 / 3)
    ours = _write(tmp_path / "ours.jsonl", [{"context": "A passage.", "question": "What?", "answer": "passage"}])
    row = load_split(f"drop:{ours}", "test")[0]
    assert (row["metric"], row["domain"], row["context"]) == ("f1", "drop", "A passage.")
    _write(native, [{"query_id": "q9", "passage": "p", "question": "q", "answers_spans": {"spans": [], "types": []}}])
    with pytest.raises(ValueError, match=r"row 0 \(id 'q9'\) is missing field 'answers_spans'"):
        load_splits(f"drop:{native}")


def test_bamboogle_local_file_and_accuracy_metric(tmp_path):
    path = _write(
        tmp_path / "bamboogle.jsonl",
        [{"Question": "Who founded the company that makes the iPhone?", "Answer": "Steve Jobs"}],
    )
    row = load_split(f"bamboogle:{path}", "test")[0]
    assert (row["question"], row["answer"], row["metric"], row["context"]) == (
        "Who founded the company that makes the iPhone?",
        "Steve Jobs",
        "acc",
        "",
    )
    assert grade("It was Steve Jobs", row["answer"], row["metric"]) == 1.0
    _write(path, [{"Question": "Who?", "Answer": "x"}, {"Question": "Who else?"}])
    with pytest.raises(ValueError, match=r"row 1 is missing field 'Answer'"):
        load_splits(f"bamboogle:{path}")


def test_hub_datasets_offline_fail_with_the_local_way_out():
    with pytest.raises(UsageError, match=r"drop: pass a local file with drop:FILE.jsonl"):
        load_splits("drop")
    with pytest.raises(
        UsageError, match=r"^unknown dataset 'nonesuch'; valid: bamboogle, drop, gsm8k, world, .*a folder"
    ):
        load_splits("nonesuch")


def test_jsonl_rows_are_completed_to_one_schema(tmp_path):
    """The schema's own example (optional fields absent on some rows), numeric answers and null fields load."""
    from rlrefine import data

    example = [json.loads(line) for line in data.__doc__.split("For example::")[1].strip().splitlines()[:2]]
    loaded = load_split(str(_write(tmp_path / "doc.jsonl", example)))
    assert loaded["metric"] == ["numeric", "acc"] and loaded["context"] == ["Ada has 3 apples .", ""]
    assert grade("Sadi Carnot was", loaded[1]["answer"], loaded[1]["metric"]) == 1.0
    rows = [{"id": 7, "question": "a ?", "answer": 3, "context": None}, {"question": "b ?", "answer": 4.5}]
    loaded = load_split(str(_write(tmp_path / "numbers.jsonl", rows)))
    assert loaded["id"] == ["7", "00001"] and loaded["answer"] == ["3", "4.5"] and loaded["context"] == ["", ""]
    assert grade("The answer is 3", loaded[0]["answer"]) == 1.0
    assert len(load_split(str(tmp_path / "numbers.jsonl"), limit=0)) == 0


def test_duplicate_ids_fail_naming_the_id(tmp_path):
    rows = [{"id": "x", "question": "a ?", "answer": "1"}, {"id": "x", "question": "b ?", "answer": "2"}]
    with pytest.raises(ValueError, match="dup.jsonl line 2: id 'x' repeats line 1; ids must be unique"):
        load_split(str(_write(tmp_path / "dup.jsonl", rows)))


SOCRATIC = [  # the sub-questions of tests/data/gsm8k/test_socratic.jsonl, as written there
    ["How many rolls does she make in the afternoon?", "How many rolls does she make in all?"],
    ["How many pencils does the school order?"],
    [
        "How many eggs are in the small packs?",
        "How many eggs are in the large packs?",
        "How many eggs are left after the cakes?",
        "How many eggs does she keep?",
    ],
]


def test_gsm8k_files_load_in_the_pipelines_schema():
    splits = load_splits(f"gsm8k:{DATA / 'gsm8k'}")
    assert {k: len(v) for k, v in splits.items()} == {"train": 2, "test": 3}
    test = splits["test"]
    assert test["answer"] == ["72", "1250", "16"] and test["id"] == [
        "gsm8k-test-00000",
        "gsm8k-test-00001",
        "gsm8k-test-00002",
    ]
    assert set(test["metric"]) == {"numeric"} and set(test["context"]) == {""} and test["subquestions"] == [[], [], []]
    assert test[0]["question"].startswith("A baker makes 24 rolls") and test[1]["solution"].endswith("#### 1,250")
    socratic = load_splits(f"gsm8k:socratic:{DATA / 'gsm8k'}")["test"]
    assert (
        socratic["subquestions"] == SOCRATIC and socratic["id"] == test["id"] and socratic["answer"] == test["answer"]
    )


def test_eval_and_teach_on_gsm8k_socratic_files(tmp_path):
    out = tmp_path / "eval"
    data = f"gsm8k:socratic:{DATA / 'gsm8k'}"
    assert main(["eval", "--data", data, "--decomposers", "none", "oracle", "--solvers", ECHO, "--out", str(out)]) == 0
    none, oracle = json.loads((out / "results.json").read_text())["cells"]
    assert (oracle["n"], oracle["accuracy"], oracle["oracle_match"], oracle["errors"]) == (3, 1.0, 1.0, 0)
    assert oracle["mean_subquestions"] == pytest.approx(7 / 3) and oracle["valid_format"] == pytest.approx(2 / 3)
    assert none["mean_subquestions"] == 0 and none["oracle_match"] == 0 and oracle["by_domain"] == {"gsm8k": 1.0}
    sft = tmp_path / "sdr.jsonl"
    argv = ["teach", "--data", data, "--split", "test", "--teacher", "oracle", "--solver", ECHO, "--out", str(sft)]
    assert main(argv) == 0
    kept = read_jsonl(sft)
    assert [r["id"] for r in kept] == ["gsm8k-test-00000", "gsm8k-test-00001", "gsm8k-test-00002"]
    assert [list(parse(r["completion"][0]["content"]).subquestions) for r in kept] == SOCRATIC
    assert all(r["correct"] for r in kept) and [r["valid"] for r in kept] == [True, True, False]  # 4 > the cap 3
    assert kept[1]["prompt"][-1]["content"] == "Question: " + load_split(data)[1]["question"]  # no context line


def test_eval_and_teach_on_drop_and_bamboogle_files(tmp_path):
    out = tmp_path / "drop"
    drop = f"drop:{DATA / 'drop'}"
    argv = ["eval", "--data", drop, "--split", "validation", "--decomposers", "none", "--solvers", ECHO]
    assert main([*argv, "--out", str(out)]) == 0
    (cell,) = json.loads((out / "results.json").read_text())["cells"]
    # the solver names the first gold span: F1 1 for "Lee Park" and "40", 2/3 for "Anna Berg" of "Anna Berg, Carl Dunn"
    assert cell["n"] == 3 and cell["accuracy"] == pytest.approx((1 + 1 + 2 / 3) / 3)
    sdr = tmp_path / "drop-sdr.jsonl"
    argv = ["teach", "--data", drop, "--split", "validation", "--teacher", "none", "--solver", ECHO]
    assert main([*argv, "--out", str(sdr)]) == 0
    assert [r["id"] for r in read_jsonl(sdr)] == ["t1-q1", "t1-q2"]  # SD-R keeps full marks only
    assert [r["id"] for r in read_jsonl(tmp_path / "drop-sdr.rejected.jsonl")] == ["t2-q1"]
    out = tmp_path / "bamboogle"
    bamboogle = f"bamboogle:{DATA / 'bamboogle' / 'test.jsonl'}"
    assert main(["eval", "--data", bamboogle, "--decomposers", "none", "--solvers", ECHO, "--out", str(out)]) == 0
    (cell,) = json.loads((out / "results.json").read_text())["cells"]
    assert (cell["n"], cell["accuracy"], cell["by_domain"]) == (3, 1.0, {"bamboogle": 1.0})
    assert load_split(bamboogle)["answer"] == ["Herman Melville", "Paris", "Venice"]


def test_hub_ids_the_loaders_ask_for(monkeypatch, tmp_path):
    """With no local copy each loader asks the hub for its dataset: the ids and configs are checked here, with the
    hub's answers stood in by the files in tests/data (in the hub's schema), so no test reaches the hub."""
    from datasets import DatasetDict
    from datasets import load_dataset as real_load

    import rlrefine.data.real as real

    files = {
        ("openai/gsm8k", "main"): {s: DATA / "gsm8k" / f"{s}.jsonl" for s in ("train", "test")},
        ("openai/gsm8k", "socratic"): {s: DATA / "gsm8k" / f"{s}_socratic.jsonl" for s in ("train", "test")},
        ("ucinlp/drop",): {"validation": DATA / "drop" / "validation.jsonl"},
        ("chiayewken/bamboogle",): {"test": DATA / "bamboogle" / "test.jsonl"},
    }
    asked = []

    def hub(*args, **kwargs):
        asked.append(args)
        found = files[args]
        return DatasetDict({s: real_load("json", data_files=str(f), split="train") for s, f in found.items()})

    monkeypatch.setattr(real, "load_dataset", hub)
    monkeypatch.setattr(real, "GSM8K_LOCAL", tmp_path / "no-copy-here")
    monkeypatch.delenv(real.GSM8K_ENV, raising=False)
    assert load_split("gsm8k")["answer"] == ["72", "1250", "16"]
    assert load_split("gsm8k:socratic")["subquestions"] == SOCRATIC
    assert load_split("drop", "validation")["answer"] == ["Lee Park", "40", "Anna Berg, Carl Dunn"]
    assert load_split("bamboogle")["metric"] == ["acc"] * 3
    assert asked == list(files)
