"""``rlrefine teach``: SD-T/SD-R data as it goes, resumed after a kill without redoing finished rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from datasets import load_dataset
from helpers import HOLD_TEACHER

from rlrefine.commands.cli import main
from rlrefine.core.atomic import read_jsonl
from rlrefine.core.format import MAX_SUBQUESTIONS, decomposer_instruction
from rlrefine.decomposers import Decomposed, make_decomposer
from rlrefine.training.teach import rejected_path, teach


def test_sd_r_keeps_only_solver_correct_rows_and_is_sft_data(test_rows, tmp_path):
    out = tmp_path / "sdr.jsonl"
    counts = teach(test_rows, "teacher", out, solver="hops=1", batch_size=32, progress=False)
    kept, rejected = read_jsonl(out), read_jsonl(rejected_path(out))
    assert counts["kept"] == len(kept) > 0 and counts["rejected"] == len(rejected) > 0 and counts["errors"] == 0
    assert counts["wrong"] == len(rejected) and {r["reason"] for r in rejected} == {"wrong"}
    assert sorted(r["id"] for r in kept + rejected) == sorted(r["id"] for r in test_rows)
    assert all(r["correct"] for r in kept) and not any(r["correct"] for r in rejected)
    first = kept[0]
    assert first["prompt"][0] == {"role": "system", "content": decomposer_instruction(MAX_SUBQUESTIONS)}
    assert first["completion"][0]["role"] == "assistant" and first["completion"][0]["content"].startswith("Q1:")
    sft = load_dataset("json", data_files=str(out), split="train")  # what TRL's SFTTrainer takes
    assert {"prompt", "completion"} <= set(sft.column_names) and len(sft) == len(kept)
    again = teach(test_rows, "teacher", out, solver="hops=1", progress=False)
    assert again["resumed"] == len(test_rows) and again["kept"] == again["rejected"] == 0
    assert len(read_jsonl(out)) == len(kept)
    with pytest.raises(ValueError, match="holds rows from teacher 'teacher'.*--overwrite"):
        teach(test_rows, "oracle", out, solver="hops=1", progress=False)


def test_sd_t_cli_with_the_tiny_prompt(tmp_path, capsys):
    out = tmp_path / "sdt.jsonl"
    argv = ["teach", "--data", "world:small", "--split", "test", "--limit", "20", "--teacher", "oracle"]
    assert main([*argv, "--out", str(out), "--instruction", ""]) == 0
    rows = read_jsonl(out)
    assert len(rows) == 20 and all(r["correct"] is None and r["solver"] is None for r in rows)
    assert rows[0]["prompt"][0]["role"] == "user"  # instruction "" drops the system message
    assert json.loads(capsys.readouterr().out.splitlines()[0])["kept"] == 20
    assert main([*argv, "--out", str(out), "--overwrite"]) == 0
    assert len(read_jsonl(out)) == 20 and read_jsonl(out)[0]["prompt"][0]["role"] == "system"


def test_sd_t_keeps_the_teachers_flaws_and_counts_them(test_rows, tmp_path):
    """SD-T imitates its teacher, flaws included: the world teacher's repeated sub-questions stay, counted by flaw."""
    counts = teach(test_rows, "teacher", tmp_path / "sdt.jsonl", progress=False)
    rows = read_jsonl(tmp_path / "sdt.jsonl")
    flawed = [r for r in rows if not r["valid"]]
    assert counts["kept"] == len(rows) == len(test_rows) and counts["unparseable"] == counts["wrong"] == 0
    assert counts["flawed"] == len(flawed) == counts["flaws"]["repeated_subquestion"] > 0  # 17 of these 200
    assert all(r["problems"] == ["repeated_subquestion"] for r in flawed)


class Writes:
    """A teacher that writes the given replies, in turn: what a real LLM teacher sends back at its worst."""

    name, price_key = "writes", "teacher"

    def __init__(self, replies: list[str]) -> None:
        self.replies = replies

    def decompose(self, rows):
        return [Decomposed(self.replies[i % len(self.replies)]) for i, _ in enumerate(rows)]


REPLIES = [
    "To solve this, we need the number of cards Pia has, then Ada's.",  # prose
    "I'm sorry, but I can't help with that.",  # a refusal
    "",  # nothing
    "Q1: How many cards does Pia have ?\nQ2: How many cards does Pia have ?",  # flawed: a repeated sub-question
    "No decomposition .",
]


def test_replies_without_a_decomposition_are_rejected_with_their_reason(test_rows, tmp_path, capsys):
    out, rows = tmp_path / "sdt.jsonl", test_rows[:10]
    counts = teach(rows, Writes(REPLIES), out, progress=False)
    assert (counts["kept"], counts["unparseable"], counts["flawed"], counts["errors"]) == (4, 6, 2, 0)
    assert counts["flaws"] == {"repeated_subquestion": 2}
    rejected = read_jsonl(rejected_path(out))
    assert {r["reason"] for r in rejected} == {"unparseable"} and all(not r["valid"] for r in rejected)
    assert {r["completion"][0]["content"] for r in rejected} == set(REPLIES[:3])
    sdr = teach(rows, Writes(REPLIES), tmp_path / "sdr.jsonl", solver="hops=1", progress=False)
    assert sdr["unparseable"] == 6 and sdr["kept"] + sdr["wrong"] == 4  # prose never reaches the solver
    everything = teach(rows, Writes(REPLIES), tmp_path / "all.jsonl", progress=False, keep_unparseable=True)
    assert everything["kept"] == 10 and everything["unparseable"] == 0 and everything["flawed"] == 8
    argv = ["teach", "--data", "world:small", "--split", "test", "--limit", "4", "--out", str(tmp_path / "cli.jsonl")]
    assert main([*argv, "--teacher", "oracle"]) == 0 and '"unparseable": 0' in capsys.readouterr().out


def test_oracle_is_refused_on_data_without_gold_subquestions(tmp_path, capsys):
    data = tmp_path / "plain.jsonl"
    data.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "5", "domain": "arith"}) + "\n")
    argv = ["teach", "--data", str(data), "--split", "test", "--teacher", "oracle", "--out", str(tmp_path / "o.jsonl")]
    assert main(argv) == 2 and not (tmp_path / "o.jsonl").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "rlrefine teach: error: decomposer 'oracle' needs gold sub-questions (a 'subquestions' column); the data "
        "has none: use data that has them (world, gsm8k:socratic, a JSONL with 'subquestions')"
    ]


class HalfBroken:
    """A real decomposer whose backend fails on some problems (as a flaky endpoint would)."""

    name, price_key = "half-broken", "teacher"

    def __init__(self) -> None:
        self.oracle = make_decomposer("oracle")
        self.broken: set = set()

    def decompose(self, rows):
        good = self.oracle.decompose(rows)
        return [Decomposed("", error="HTTP 503") if r["id"] in self.broken else d for r, d in zip(rows, good)]


def test_failed_rows_are_not_written_and_are_retried(test_rows, tmp_path):
    out, rows = tmp_path / "t.jsonl", test_rows[:30]
    teacher = HalfBroken()
    teacher.broken = {r["id"] for r in rows[::3]}
    counts = teach(rows, teacher, out, batch_size=8, progress=False)
    assert counts["errors"] == 10 and counts["kept"] == 20
    assert not {r["id"] for r in read_jsonl(out)} & teacher.broken
    teacher.broken = set()  # the endpoint recovered
    counts = teach(rows, teacher, out, batch_size=8, progress=False)
    assert counts["resumed"] == 20 and counts["kept"] == 10 and counts["errors"] == 0
    assert sorted(r["id"] for r in read_jsonl(out)) == sorted(r["id"] for r in rows)


@pytest.mark.slow
def test_resumes_after_a_kill_without_redoing_rows(tiny_model_dir, tmp_path):
    out = tmp_path / "killed.jsonl"
    inner = {"backend": "hf", "model": str(tiny_model_dir), "max_tokens": 32, "device": "cpu"}
    teacher = json.dumps({"name": HOLD_TEACHER, "inner": inner})
    command = [sys.executable, "-m", "rlrefine.commands.cli", "teach", "--data", "world:small", "--split", "train"]
    command += ["--limit", "120", "--teacher", teacher, "--solver", "hops=1", "--batch_size", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    held = {**env, "RLREFINE_TEST_HOLD_AFTER": "10"}  # the first run stops answering after 10 problems: never done
    files = (out, rejected_path(out))

    def finished() -> int:
        return sum(len(read_jsonl(f)) for f in files)

    proc = subprocess.Popen(command, env=held, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hang = time.monotonic() + 1800  # no clock decides on a busy machine: a guard against a hang only
    while finished() < 10 and proc.poll() is None and time.monotonic() < hang:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = {f: f.read_text().split("\n")[:-1] for f in files if f.exists()}  # lines ended by a newline
    done_before = finished()
    assert 10 <= done_before < 120
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    summary = json.loads(next(line for line in rerun.stdout.splitlines() if line.startswith("{")))
    assert summary["resumed"] == done_before and summary["kept"] + summary["rejected"] == 120 - done_before
    ids = [r["id"] for f in files for r in read_jsonl(f)]
    assert len(ids) == len(set(ids)) == 120  # every problem once: none redone, none lost
    for f, lines in before.items():  # finished rows were kept as written, not rewritten
        assert f.read_text().splitlines()[: len(lines)] == lines


def test_append_after_a_torn_line_keeps_the_new_rows(tmp_path):
    """A kill mid-write leaves half a line; the next append must not glue its first row onto it."""
    from rlrefine.core.atomic import append_jsonl, read_jsonl

    path = tmp_path / "cache.jsonl"
    append_jsonl(path, [{"id": 1}])
    with open(path, "a") as f:
        f.write('{"id": 2, "te')  # torn
    append_jsonl(path, [{"id": 3}, {"id": 4}])
    assert read_jsonl(path) == [{"id": 1}, {"id": 3}, {"id": 4}]
    with open(path, "a") as f:
        f.write('{"id": 5}')  # whole row, killed before its newline: readers count it as done, so it must stay
    assert read_jsonl(path)[-1] == {"id": 5}
    append_jsonl(path, [{"id": 6}])
    assert read_jsonl(path) == [{"id": 1}, {"id": 3}, {"id": 4}, {"id": 5}, {"id": 6}]


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """Results are written through a private temp file; the published file must not stay private (0600)."""
    from rlrefine.core.atomic import write_json

    write_json(tmp_path / "results.json", {"accuracy": 1.0})
    (tmp_path / "plain.json").write_text("{}")  # what any other program would create here
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == (tmp_path / "plain.json").stat().st_mode & 0o777
