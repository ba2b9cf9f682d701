"""Real datasets: GSM8K from the shared files (skipped when absent), DROP and Bamboogle from local files in the
hub's schema or ours, and rows with a missing field failing by row and field name."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

import pytest

from rlrefine.atomic import read_jsonl
from rlrefine.data import load_split, load_splits
from rlrefine.datasets_real import gsm8k_answer
from rlrefine.decomposers import make_decomposer
from rlrefine.format import parse
from rlrefine.grading import extract_answer, grade
from rlrefine.numeric import parse_number

ROOT = Path(__file__).resolve().parents[1]
GSM8K = Path(os.environ.get("RLREFINE_GSM8K_DIR") or ROOT.parent / "shared" / "data" / "gsm8k")
GSM8K_FILES = ("train.jsonl", "test.jsonl", "test_socratic.jsonl")  # all, or the loader would go to the hub
needs_gsm8k = pytest.mark.skipif(
    not all((GSM8K / f).is_file() for f in GSM8K_FILES),
    reason=f"GSM8K files not found at {GSM8K} (set RLREFINE_GSM8K_DIR to a folder with {', '.join(GSM8K_FILES)})",
)


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


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


@needs_gsm8k
def test_gsm8k_from_a_folder_and_bad_rows(tmp_path):
    rows = read_jsonl(GSM8K / "test.jsonl")[:3]
    _write(tmp_path / "test.jsonl", rows)
    assert load_split(f"gsm8k:{tmp_path}", "test")["answer"] == [gsm8k_answer(r["answer"]) for r in rows]
    _write(tmp_path / "test.jsonl", [rows[0], {"question": rows[1]["question"], "answer": "no final line"}])
    with pytest.raises(ValueError, match=r"row 1 has no '####' final answer in field 'answer'"):
        load_splits(f"gsm8k:{tmp_path}")
    _write(tmp_path / "test.jsonl", [rows[0], {"answer": rows[1]["answer"]}])
    with pytest.raises(ValueError, match=r"row 1 is missing field 'question'"):
        load_splits(f"gsm8k:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="no train.jsonl or test.jsonl"):
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
    with pytest.raises(FileNotFoundError, match=r"drop: pass a local file with drop:FILE.jsonl"):
        load_splits("drop")
    with pytest.raises(ValueError, match=r"'gsm8k\[:socratic\]\[:DIR\]'"):
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
