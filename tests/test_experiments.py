"""The ablation scripts: each parses its options, and the one that covers the most code (every algorithm, SD-R and
the report) runs its --quick path end to end, as does static_vs_dynamic (seconds: no training)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [
    "sft_vs_rl", "solver_transfer", "cross_domain", "distill_which_part", "subq_cap", "static_vs_dynamic", "dialogue_vs_static",
]  # fmt: skip


@pytest.mark.slow  # a new interpreter per script
@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_takes_the_shared_options(script):
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / f"{script}.py"), "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(flag in done.stdout for flag in ("--out", "--seeds", "--config", "--quick"))


@pytest.mark.slow
def test_sft_vs_rl_quick_end_to_end(tmp_path):
    out = tmp_path / "sft_vs_rl"
    cmd = [
        sys.executable,
        str(ROOT / "experiments" / "sft_vs_rl.py"),
        "--out",
        str(out),
        "--quick",
        "--worlds",
        "default",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    text = (out / "report-default" / "report.md").read_text()
    for row in ("rloo: rl-rloo", "ppo: rl-ppo", "rft: rl-rft", "sft_variant=sd-r): sft"):
        assert row in text, row
    assert sorted(p.name for p in (out / "default").iterdir() if p.is_dir()) == [
        "grpo-0", "ppo-0", "rft-0", "rloo-0", "sdr-grpo-0",
    ]  # fmt: skip
    runs = {p: p.stat().st_mtime_ns for p in (out / "default").rglob("*")}
    again = subprocess.run(cmd, capture_output=True, text=True)  # finished runs are reused, not redone
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (out / "default").rglob("*")} == runs  # not a file written or added


@pytest.mark.slow  # the script end to end
def test_static_vs_dynamic_quick_end_to_end(tmp_path, tiny_model_dir):
    out = tmp_path / "svd"
    script = str(ROOT / "experiments" / "static_vs_dynamic.py")
    cmd = [sys.executable, script, "--out", str(out), "--quick", "--decomposers", f"tiny={tiny_model_dir}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this tree's rlrefine, whichever one is installed
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    text = (out / "report.md").read_text()
    for row in ("| teacher | hops=1 |", "| oracle | hops=2 |", "| tiny | hops=1 |"):
        assert row in text, row
    cells = json.loads((out / "report.json").read_text())["cells"]
    assert len(cells) == 3 * 2 * 2  # (teacher, oracle, tiny) x (hops=1, hops=2) x (static, dynamic)
    oracle = {c["decomposer"]: c for c in cells if c["solver"] == "hops=1" and c["decomposer"].startswith("oracle")}
    assert oracle["oracle"]["accuracy"] == oracle["oracle (dynamic)"]["accuracy"] == 1.0


@pytest.mark.slow  # new interpreters
def test_the_gpu_check_says_where_it_cannot_run_and_its_cpu_showable_check_passes(tmp_path):
    """``experiments/gpu_check.py`` on a machine without a GPU checks nothing and says so (exit 2); its one check that
    needs no GPU, the refusal of a vllm: reward solver beside TRL's colocated vLLM, runs here as it will there."""
    script = str(ROOT / "experiments" / "gpu_check.py")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, script, "--out", str(tmp_path)], capture_output=True, text=True, env=env)
    assert (
        done.returncode == 2 and done.stdout.strip() == "no CUDA GPU here: nothing checked (each check needs one GPU)"
    )
    one = [sys.executable, script, "--out", str(tmp_path), "--one", "vllm beside colocate"]
    done = subprocess.run(one, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("refused: an in-process vllm: engine (train_solver) beside TRL's colocated vLLM")
    assert not (tmp_path / "refused").exists()  # refused before any work: no run folder
