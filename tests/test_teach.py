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

from rlrefine.atomic import read_jsonl
from rlrefine.cli import main
from rlrefine.decomposers import Decomposed, make_decomposer
from rlrefine.format import DECOMPOSER_INSTRUCTION, MAX_SUBQUESTIONS
from rlrefine.teach import rejected_path, teach


def test_sd_r_keeps_only_solver_correct_rows_and_is_sft_data(test_rows, tmp_path):
    out = tmp_path / "sdr.jsonl"
    counts = teach(test_rows, "teacher", out, solver="hops=1", batch_size=32, progress=False)
    kept, rejected = read_jsonl(out), read_jsonl(rejected_path(out))
    assert counts["kept"] == len(kept) > 0 and counts["rejected"] == len(rejected) > 0 and counts["errors"] == 0
    assert sorted(r["id"] for r in kept + rejected) == sorted(r["id"] for r in test_rows)
    assert all(r["correct"] for r in kept) and not any(r["correct"] for r in rejected)
    first = kept[0]
    assert first["prompt"][0] == {"role": "system", "content": DECOMPOSER_INSTRUCTION.format(cap=MAX_SUBQUESTIONS)}
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
    teacher = json.dumps({"backend": "hf", "model": str(tiny_model_dir), "max_tokens": 32, "device": "cpu"})
    command = [sys.executable, "-m", "rlrefine.cli", "teach", "--data", "world:small", "--split", "train"]
    command += ["--limit", "120", "--teacher", teacher, "--solver", "hops=1", "--batch_size", "2", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    files = (out, rejected_path(out))

    def finished() -> int:
        return sum(len(read_jsonl(f)) for f in files)

    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    from rlrefine.atomic import append_jsonl, read_jsonl

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
    from rlrefine.atomic import write_json

    write_json(tmp_path / "results.json", {"accuracy": 1.0})
    (tmp_path / "plain.json").write_text("{}")  # what any other program would create here
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == (tmp_path / "plain.json").stat().st_mode & 0o777
