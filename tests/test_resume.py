"""Pipeline-level resume after a real kill (SIGKILL of a ``rlrefine/train.py`` process, not an exception): in the SFT
stage, in GRPO and RLOO, in an RFT round. ``--resume`` finishes with the full step count; ``--overwrite`` starts over."""

import json
import subprocess
import sys

import pytest
from helpers import HOLD_REWARD, ROOT

from rlrefine.train import main

TRAIN = [sys.executable, str(ROOT / "rlrefine" / "train.py")]
TINY_EVAL = ["--data", "world:small", "--eval_limit", "8", "--eval_solvers", "hops=1", "--pass_k", "2"]
TINY_GEN = ["--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "24"]


def _finish(cmd: list[str]) -> None:
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)  # the same settings, continued
    assert done.returncode == 0, done.stderr[-3000:]


def _facts(run, stage: str = "rl") -> dict:
    return json.loads((run / stage / "eval.json").read_text())["training"]


def test_the_newest_complete_checkpoint_is_resumed_from(tmp_path):
    """By step number (checkpoint-10 is newer than checkpoint-9), and only one whose trainer state is whole (a kill
    mid-save leaves it torn or missing)."""
    from rlrefine.training.trainers import last_checkpoint

    assert last_checkpoint(tmp_path / "absent") is None and last_checkpoint(tmp_path) is None
    for step, state in [(2, "{}"), (9, "{}"), (10, '{"global_step": 10}'), (12, '{"global_step": 1'), (14, None)]:
        (tmp_path / f"checkpoint-{step}").mkdir()
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")


@pytest.mark.slow
def test_killed_in_sft_the_run_resumes_there_and_overwrite_starts_over(tiny_model_dir, tmp_path, kill_at_checkpoint):
    run = tmp_path / "run"
    sft = "{max_steps: 40, save_steps: 2, per_device_train_batch_size: 8, warmup_steps: 0}"  # 38 steps after a save
    argv = ["--base_model", str(tiny_model_dir), "--sft", sft, "--run_dir", str(run), "--train_limit", "64"]
    argv += ["--max_steps", "1", *TINY_EVAL, *TINY_GEN]
    checkpoint = kill_at_checkpoint([*TRAIN, *argv], run / "sft.work")
    assert not (run / "sft").exists() and not (run / "rl").exists()
    _finish([*TRAIN, *argv])
    facts = _facts(run, "sft")
    assert facts["resumed_from"].endswith(checkpoint.name) and facts["steps"] == 40
    assert _facts(run)["steps"] == 1 and (run / "results.json").exists() and not (run / "sft.work").exists()
    (run / "left-behind").write_text("from the first run")
    main([*argv, "--overwrite"])  # the same command, started over: nothing resumed, nothing left
    assert not (run / "left-behind").exists()
    assert _facts(run, "sft")["resumed_from"] is None and _facts(run, "sft")["steps"] == 40
    assert _facts(run)["resumed_from"] is None and (run / "results.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_killed_in_rl_the_run_resumes_from_its_checkpoint(tiny_decomposer, tmp_path, kill_at_checkpoint, algorithm):
    run = tmp_path / "run"
    rewards = json.dumps([{"name": "solver"}, {"name": HOLD_REWARD, "weight": 0.0}])
    argv = ["--algorithm", algorithm, "--decomposer", str(tiny_decomposer), "--run_dir", str(run), "--rewards", rewards]
    argv += ["--save_steps", "2", "--max_steps", "5", "--train_limit", "32", "--logging_steps", "1"]
    cmd = [*TRAIN, *argv, *TINY_EVAL, *TINY_GEN]
    checkpoint = kill_at_checkpoint(cmd, run / "rl.work", env={"RLREFINE_TEST_HOLD_AT": "2"})
    assert checkpoint.name == "checkpoint-2" and not (run / "rl").exists()
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    spent = state["stateful_callbacks"]["TimeBudget"]["attributes"]["spent"]  # the killed launch's RL seconds
    _finish(cmd)
    facts = _facts(run)
    assert facts["resumed_from"].endswith("checkpoint-2") and facts["steps"] == 5 and facts["algorithm"] == algorithm
    assert spent > 0 and facts["rl_minutes"] * 60 > spent  # the killed launch's time up to its checkpoint counts
    logged = [h["step"] for h in json.loads((run / "rl" / "eval.json").read_text())["log_history"] if "loss" in h]
    assert logged == [1, 2, 3, 4, 5]  # steps 1-2 from the killed launch's checkpoint, 3-5 from this one
    assert (run / "results.json").exists() and not (run / "rl.work").exists()


@pytest.mark.slow
def test_killed_in_an_rft_round_the_run_resumes_after_its_last_finished_round(
    tiny_decomposer, tmp_path, kill_at_checkpoint
):
    run = tmp_path / "run"
    argv = ["--algorithm", "rft", "--decomposer", str(tiny_decomposer), "--run_dir", str(run), "--rft_rounds", "2"]
    argv += ["--rft_problems", "16", "--rft_samples", "4", "--max_steps", "20", "--save_steps", "2"]
    argv += [
        "--per_device_train_batch_size",
        "8",
        "--train_limit",
        "32",
        "--rewards",
        '[{"name": "solver"}]',
        *TINY_EVAL,
    ]
    kill_at_checkpoint([*TRAIN, *argv], run / "rl.work" / "round-1")  # killed during round 1's fine-tuning
    finished = json.loads((run / "rl.work" / "rounds.json").read_text())
    assert [r["round"] for r in finished] == [0] and not (run / "rl").exists()
    _finish([*TRAIN, *argv])
    facts = _facts(run)
    assert facts["rounds"][0] == finished[0]  # round 0 was not redone
    assert [r["round"] for r in facts["rounds"]] == [0, 1] and facts["rounds"][1]["steps"] == 20
    assert facts["rl_minutes"] * 60 > finished[0]["seconds"] > 0  # the killed launch's finished round counts
    assert (run / "results.json").exists() and not (run / "rl.work").exists()


@pytest.mark.slow
def test_killed_in_the_final_evaluation_the_resume_keeps_the_finished_cells(tiny_decomposer, tmp_path):
    """A kill while the matrix is evaluated (here: held at its second solver) loses no finished cell: the rerun with
    --resume reads them from the run's cache and computes only the rest."""
    import os
    import signal
    import time

    run = tmp_path / "run"
    held = json.dumps({"name": str(ROOT / "tests" / "plugins" / "slow_solver.py") + ":Slow", "seconds": 0})
    argv = ["--decomposer", str(tiny_decomposer), "--run_dir", str(run), "--max_steps", "1", *TINY_EVAL, *TINY_GEN]
    argv += ["--eval_solvers", "hops=1", held]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RLREFINE_TEST_HOLD_SOLVER": "1"}
    proc = subprocess.Popen([*TRAIN, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells = run / "eval" / "cache"
    hang = time.monotonic() + 1800  # waits on the run, not on a clock: a guard against a hang only
    while not list(cells.rglob("*__hops=1-*.json")) and proc.poll() is None and time.monotonic() < hang:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = {p: p.stat().st_mtime_ns for p in cells.rglob("*.json")}
    assert before and not (run / "results.json").exists()
    _finish([*TRAIN, *argv])
    results = json.loads((run / "results.json").read_text())
    assert len(results["cells"]) == 5 * 2 and all(c["errors"] == 0 for c in results["cells"])
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished cells read back, not redone
