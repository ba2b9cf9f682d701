"""``rlrefine report`` from hand-made run folders: seeds grouped, missing and failed cells shown as missing, the
"holds up" arithmetic, an old schema refused by name, and no model loaded."""

import json
from pathlib import Path

import pytest
import yaml

from rlrefine.commands.cli import main as cli
from rlrefine.evaluation.evaluate import SCHEMA


def _cell(decomposer, solver, accuracy, n=100, errors=0, cost=0.05):
    return {
        "decomposer": decomposer, "solver": solver, "n": n, "accuracy": accuracy, "errors": errors,
        "first_error": "TimeoutError: slow" if errors else None, "mean_subquestions": 2.0, "valid_format": 1.0,
        "cost_usd_per_1k": cost,
    }  # fmt: skip


def _run(root: Path, name: str, config: dict, cells: list[dict], schema: int = SCHEMA) -> Path:
    run = root / name
    (run / "rl").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"schema": schema, "n": 100, "rows_key": "k", "cells": cells}))
    (run / "config.yaml").write_text(yaml.safe_dump({"run_dir": str(run), **config}))
    log = [{"step": s, "reward": 0.1 * s, "solver[hops=1]/accuracy": 0.2 * s, "entropy": 1.0} for s in (1, 2, 3)]
    (run / "rl" / "eval.json").write_text(json.dumps({"training": {"rl_minutes": 2.0}, "log_history": log}))
    return run


def _grpo(seed, rl_trained, rl_unseen, sft=(0.5, 0.4)):
    return [
        _cell("teacher", "hops=1", 0.4), _cell("teacher", "memory=1", 0.35),
        _cell("sft", "hops=1", sft[0]), _cell("sft", "memory=1", sft[1]),
        _cell("rl-grpo", "hops=1", rl_trained), _cell("rl-grpo", "memory=1", rl_unseen),
    ]  # fmt: skip


@pytest.fixture()
def runs(tmp_path) -> list[Path]:
    grpo = {"algorithm": "grpo", "train_solver": "hops=1", "learning_rate": 1e-4}
    ppo = {"algorithm": "ppo", "train_solver": "hops=1", "learning_rate": 1e-4}
    return [
        _run(tmp_path, "grpo-0", {**grpo, "seed": 0}, _grpo(0, 0.9, 0.7)),
        _run(tmp_path, "grpo-1", {**grpo, "seed": 1}, _grpo(1, 0.8, 0.5)),
        _run(  # PPO's memory=1 cell failed on every problem; its hops=1 cell is missing altogether
            tmp_path,
            "ppo-0",
            {**ppo, "seed": 0},
            [_cell("sft", "hops=1", 0.5), _cell("rl-ppo", "memory=1", 0.0, errors=100)],
        ),
    ]


def test_report_groups_seeds_and_shows_missing_cells_as_missing(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli(["report", *map(str, runs), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    from datetime import date

    made_by = f"Made by `rlrefine report {' '.join(map(str, runs))} --out {out}` on {date.today().isoformat()}."
    assert text.splitlines()[:3] == ["# rlrefine report", "", made_by]  # how to make it again
    assert "| grpo | grpo-0, grpo-1 (2) | 100 | grpo | hops=1 | 2.0 |" in text
    assert "| grpo: rl-grpo | 0.850 (0.800–0.900) | 0.600 (0.500–0.700) |" in text  # mean (worst–best) of 2 seeds
    assert "| ppo: rl-ppo | — | — |" in text  # missing and failed: never 0
    assert "- ppo: rl-ppo x memory=1: 100 of 100, first: TimeoutError: slow" in text
    # holds up: trained 0.85 (sft 0.5): +0.35; unseen 0.6 (sft 0.4): +0.2; transfer 0.2 / 0.35
    assert "| grpo: rl-grpo | 2 | hops=1 | 0.850 | 0.600 | +0.350 | +0.200 | 0.571 |" in text
    assert "| ppo: rl-ppo | 1 | hops=1 | — | — | — | — | — |" in text
    assert all((out / f).stat().st_size > 0 for f in ("heatmap.png", "curves.png", "cost.png"))


def test_report_refuses_an_old_schema_by_name(runs, tmp_path, capsys):
    old = _run(tmp_path, "old", {"algorithm": "grpo"}, [], schema=1)
    assert cli(["report", str(runs[0]), str(old), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"rlrefine report: error: {old / 'results.json'} has results schema 1; this report reads schema {SCHEMA}: "
        "re-evaluate the run with this version (rlrefine eval, or train.py --resume)"
    )


def test_report_needs_finished_runs(tmp_path, capsys):
    assert cli(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert f"{tmp_path}: no results.json (not a finished run)" in capsys.readouterr().err


def test_groups_are_labelled_by_what_sets_them_apart(tmp_path):
    from rlrefine.evaluation.report import group

    base = {"algorithm": "grpo", "train_solver": "hops=1"}
    a = _run(tmp_path, "a", {**base, "learning_rate": 1e-4, "seed": 0}, _grpo(0, 0.9, 0.7))
    b = _run(tmp_path, "b", {**base, "learning_rate": 3e-4, "seed": 0}, _grpo(0, 0.9, 0.7))
    assert [g.label for g in group([a, b])] == ["grpo (learning_rate=0.0001)", "grpo (learning_rate=0.0003)"]


def test_one_setting_that_tells_groups_apart_is_the_label(tmp_path):
    """A cap ablation changes the teacher and the reward list together: the label names the shorter one only."""
    from rlrefine.evaluation.report import group

    runs = []
    for cap in (None, 2):
        rewards = [{"name": "solver"}, {"name": "format", "weight": 0.1, "cap": cap}]
        config = {"algorithm": "grpo", "teacher": f"teacher:cap={cap}", "rewards": rewards, "seed": 0}
        runs.append(_run(tmp_path, f"cap{cap}", config, _grpo(0, 0.9, 0.7)))
    assert [g.label for g in group(runs)] == ["grpo (teacher=teacher:cap=None)", "grpo (teacher=teacher:cap=2)"]


def test_a_train_x_eval_matrix_is_labelled_by_the_fewest_settings(tmp_path):
    """solver_transfer.py's runs: the training solver differs, and one run trains on a reward list of its own. Each
    group is named by what sets it apart (reward lists by their names), and a training solver given as ``memory=1``
    is found among the evaluated solvers under its full name."""
    from rlrefine.evaluation.report import group, holds_up

    single = [{"name": "solver", "subquestion_cost": 0.05}, {"name": "format", "weight": 0.1}]
    multi = [{"name": "multi_solver", "solvers": ["hops=1", "hops=1,memory=1"]}, {"name": "format", "weight": 0.1}]
    cells = [_cell(d, s, a) for d, a in (("sft", 0.5), ("rl-grpo", 0.9)) for s in ("hops=1", "hops=1,memory=1")]
    runs = [
        _run(tmp_path, name, {"algorithm": "grpo", "train_solver": solver, "rewards": rewards, "seed": 0}, cells)
        for name, solver, rewards in (("a", "hops=1", single), ("b", "memory=1", single), ("c", "hops=1", multi))
    ]
    assert [g.label for g in group(runs)] == [
        "grpo (rewards=solver+format, train_solver=hops=1)",
        "grpo (rewards=solver+format, train_solver=memory=1)",
        "grpo (rewards=multi_solver+format, train_solver=hops=1)",
    ]
    rows = holds_up(group(runs))
    assert [(r["train_solver"], r["trained"]) for r in rows][1] == ("hops=1,memory=1", 0.9)
