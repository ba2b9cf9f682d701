"""``rlrefine report`` from hand-made run folders: seeds grouped, missing and failed cells shown as missing, the
"holds up" arithmetic, an old schema refused by name, and no model loaded."""

import json
from pathlib import Path

import pytest
import yaml

from rlrefine.commands.cli import main as cli
from rlrefine.evaluation.evaluate import SCHEMA


def _cell(decomposer, solver, accuracy, n=100, errors=0, cost=0.05, **extra):
    return {
        "decomposer": decomposer, "solver": solver, "n": n, "accuracy": accuracy, "errors": errors,
        "first_error": "TimeoutError: slow" if errors else None, "mean_subquestions": 2.0, "valid_format": 1.0,
        "cost_usd_per_1k": cost, **extra,
    }  # fmt: skip


def _run(
    root: Path, name: str, config: dict, cells: list[dict], schema: int = SCHEMA, n=100, minutes=2.0, rows_key="k"
) -> Path:
    run = root / name
    (run / "rl").mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"schema": schema, "n": n, "rows_key": rows_key, "cells": cells}))
    (run / "config.yaml").write_text(yaml.safe_dump({"run_dir": str(run), **config}))
    log = [{"step": s, "reward": 0.1 * s, "solver[hops=1]/accuracy": 0.2 * s, "entropy": 1.0} for s in (1, 2, 3)]
    training = {"rl_minutes": minutes} if minutes is not None else {}
    (run / "rl" / "eval.json").write_text(json.dumps({"training": training, "log_history": log}))
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


def test_students_of_other_models_are_named_by_the_model_not_a_shorter_setting(tmp_path):
    """A real model's config changes its steps and pass@k too; ``pass_k=0`` would tell the groups apart in fewer
    characters, but the reader compares models. Where the model does not tell them apart, the shortest rule holds."""
    from rlrefine.evaluation.report import group

    tiny = {"algorithm": "grpo", "base_model": "base", "max_steps": 300, "pass_k": 4, "seed": 0}
    real = {"algorithm": "grpo", "base_model": "smollm2", "max_steps": 24, "pass_k": 0, "seed": 0}
    runs = [_run(tmp_path, name, c, _grpo(0, 0.9, 0.7)) for name, c in (("tiny", tiny), ("real", real))]
    assert [g.label for g in group(runs)] == ["grpo (base_model=base)", "grpo (base_model=smollm2)"]
    same_model = [{**tiny, "pass_k": k, "max_steps": 300 + k, "base_model": m} for k, m in ((1, "base"), (2, "base"))]
    same_model.append({**tiny, "pass_k": 3, "max_steps": 303, "base_model": "smollm2"})
    runs = [_run(tmp_path, f"m{i}", c, _grpo(0, 0.9, 0.7)) for i, c in enumerate(same_model)]
    assert [g.label for g in group(runs)] == ["grpo (pass_k=1)", "grpo (pass_k=2)", "grpo (pass_k=3)"]


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


def test_a_run_trained_against_a_solver_mix_is_measured_on_its_solvers_none_of_them_unseen(tmp_path):
    from rlrefine.evaluation.report import group, holds_up

    accuracy = {"sft": (0.5, 0.6, 0.2), "rl-grpo": (0.9, 0.8, 0.3)}
    cells = [_cell(d, s, a) for d, acc in accuracy.items() for s, a in zip(("hops=1", "hops=2", "neural"), acc)]
    mix = "{name: mix, solvers: [hops=1, hops=2]}"
    (row,) = holds_up(group([_run(tmp_path, "m", {"algorithm": "grpo", "train_solver": mix, "seed": 0}, cells)]))
    assert row["train_solver"] == "hops=1 + hops=2" and row["unseen"] == pytest.approx(0.3)
    assert (row["trained"], row["gain_trained"]) == (pytest.approx(0.85), pytest.approx(0.3))
    assert (row["gain_unseen"], row["transfer"]) == (pytest.approx(0.1), pytest.approx(1 / 3))


def _three_runs(root: Path) -> list[Path]:
    """GRPO over two seeds (100 and 50 problems, 2 and 3 RL minutes) and one PPO run started from another run's
    student, no RL minutes recorded. Failed cells: PPO's teacher x hops=1 and rl-ppo x memory=1 (every problem),
    grpo-1's rl-grpo x memory=1 (10 of 50: still usable)."""
    grpo = {"algorithm": "grpo", "train_solver": "hops=1"}
    g0 = [
        _cell("teacher", "hops=1", 0.4, by_domain={"a": 0.3, "b": 0.5}), _cell("teacher", "memory=1", 0.3),
        _cell("sft", "hops=1", 0.5), _cell("sft", "memory=1", 0.4),
        _cell("rl-grpo", "hops=1", 0.9, cost=0.1, by_domain={"a": 0.8, "b": 1.0}, mean_subquestions=3.0,
              valid_format=0.9),
        _cell("rl-grpo", "memory=1", 0.7),
    ]  # fmt: skip
    g1 = [
        _cell("teacher", "hops=1", 0.4, n=50), _cell("teacher", "memory=1", 0.3, n=50),
        _cell("sft", "hops=1", 0.6, n=50), _cell("sft", "memory=1", 0.3, n=50),
        _cell("rl-grpo", "hops=1", 0.7, n=50, cost=0.2, by_domain={"a": 0.6}, valid_format=0.7),
        _cell("rl-grpo", "memory=1", 0.5, n=50, errors=10),
    ]  # fmt: skip
    p0 = [
        _cell("teacher", "hops=1", 0.0, errors=100, by_domain={"a": 0.9}), _cell("teacher", "memory=1", 0.45),
        _cell("sft", "hops=1", 0.55), _cell("rl-ppo", "hops=1", 0.8, cost=0.0123),
        _cell("rl-ppo", "memory=1", 0.0, errors=100),
    ]  # fmt: skip
    ppo = {"algorithm": "ppo", "train_solver": "hops=1", "decomposer": "runs/g0/sft", "seed": 0}
    return [
        _run(root, "g0", {**grpo, "seed": 0}, g0),
        _run(root, "g1", {**grpo, "seed": 1}, g1, n=50, minutes=3.0),
        _run(root, "p0", ppo, p0, minutes=None),
    ]


THREE_RUNS_REPORT = """\
# rlrefine report

| group | runs (seeds) | problems | algorithm | train solver | RL minutes |
|---|---|---|---|---|---|
| grpo | g0, g1 (2) | 50/100 | grpo | hops=1 | 2.5 |
| ppo | p0 (1) | 100 | ppo | hops=1 | — |

## Accuracy (mean over seeds, worst–best)

| decomposer | hops=1 | memory=1 |
|---|---|---|
| teacher | 0.400 | 0.350 (0.300–0.450) |
| grpo: sft | 0.550 (0.500–0.600) | 0.350 (0.300–0.400) |
| grpo: rl-grpo | 0.800 (0.700–0.900) | 0.600 (0.500–0.700) |
| ppo: rl-ppo | 0.800 | — |

## Holds up: the training solver vs. the solvers it never saw

| decomposer | seeds | train solver | acc (trained) | mean acc (unseen) | gain trained | gain unseen | transfer ratio |
|---|---|---|---|---|---|---|---|
| grpo: rl-grpo | 2 | hops=1 | 0.800 | 0.600 | +0.250 | +0.250 | 1.000 |
| ppo: rl-ppo | 1 | hops=1 | 0.800 | — | +0.250 | — | — |

## By domain (accuracy with hops=1, mean over seeds)

| decomposer | a | b |
|---|---|---|
| teacher | 0.300 | 0.500 |
| grpo: sft | — | — |
| grpo: rl-grpo | 0.700 | 1.000 |
| ppo: rl-ppo | — | — |

## Cost and format (mean over seeds)

| decomposer | solver | sub-q | valid format | $ / 1k problems |
|---|---|---|---|---|
| teacher | hops=1 | 2.00 | 1.00 | 0.0500 |
| teacher | memory=1 | 2.00 | 1.00 | 0.0500 |
| grpo: sft | hops=1 | 2.00 | 1.00 | 0.0500 |
| grpo: sft | memory=1 | 2.00 | 1.00 | 0.0500 |
| grpo: rl-grpo | hops=1 | 2.50 | 0.80 | 0.1500 |
| grpo: rl-grpo | memory=1 | 2.00 | 1.00 | 0.0500 |
| ppo: rl-ppo | hops=1 | 2.00 | 1.00 | 0.0123 |

Failures:

- teacher x hops=1: 100 of 100, first: TimeoutError: slow
- grpo: rl-grpo x memory=1: 10 of 50, first: TimeoutError: slow
- ppo: rl-ppo x memory=1: 100 of 100, first: TimeoutError: slow
"""


def test_report_markdown_of_two_groups_by_hand(tmp_path):
    """Every table at once, computed by hand: baselines (teacher) pooled over groups, learned rows per group, the
    started-from-another-run student left out, unusable cells out of every mean (accuracy, domains, cost), a cell
    with some errors kept in them and listed as a failure, mean (worst–best) only where seeds differ."""
    from rlrefine.evaluation.report import group, markdown

    assert markdown(group(_three_runs(tmp_path))) == THREE_RUNS_REPORT


def test_report_hands_the_pictures_the_per_cell_means(tmp_path, monkeypatch):
    """The heatmap gets (mean, worst, best) per cell (None where no usable cell), the curves every seed's log per
    group, the cost plot (mean $ / 1k, mean accuracy) of the usable cells only; without ``made_by`` no line says how
    the report was made, and the pictures are linked under the text."""
    from rlrefine.evaluation import plots
    from rlrefine.evaluation.report import report

    seen = {}
    monkeypatch.setattr(plots, "plot_heatmap", lambda d, s, stats, path: seen.update(heat=(d, s, stats, path)))
    monkeypatch.setattr(plots, "plot_curves", lambda curves, path: seen.update(curves=(curves, path)))
    monkeypatch.setattr(plots, "plot_cost", lambda cost, path: seen.update(cost=(cost, path)))
    out = tmp_path / "out"
    runs = _three_runs(tmp_path)
    (runs[2] / "rl" / "eval.json").unlink()  # no RL card: no curve (and no RL minutes, as before)
    assert report(runs, out) == out / "report.md"
    text = (out / "report.md").read_text()
    assert text == THREE_RUNS_REPORT + "\n![accuracy](heatmap.png)\n![training](curves.png)\n![cost](cost.png)\n"
    decomposers, solvers, stats, path = seen["heat"]
    assert (decomposers, solvers, path) == (
        ["teacher", "grpo: sft", "grpo: rl-grpo", "ppo: rl-ppo"], ["hops=1", "memory=1"], out / "heatmap.png"
    )  # fmt: skip
    assert stats[("teacher", "memory=1")] == pytest.approx((0.35, 0.3, 0.45))
    assert stats[("grpo: rl-grpo", "hops=1")] == pytest.approx((0.8, 0.7, 0.9))
    assert stats[("ppo: rl-ppo", "memory=1")] is None and len(stats) == 8
    curves, path = seen["curves"]
    log = json.loads((runs[0] / "rl" / "eval.json").read_text())["log_history"]
    assert curves == {"grpo": [log, log], "ppo": [[]]} and path == out / "curves.png"
    cost, path = seen["cost"]
    assert path == out / "cost.png" and "ppo: rl-ppo | memory=1" not in cost and len(cost) == 7
    assert cost["grpo: rl-grpo | hops=1"] == pytest.approx((0.15, 0.8))
    assert cost["teacher | hops=1"] == pytest.approx((0.05, 0.4))  # the failed PPO cell (0.0) is not in the mean


def test_report_as_a_script_states_its_command_line(tmp_path, monkeypatch, capsys):
    """Run as ``python -m rlrefine.evaluation.report RUN --out DIR`` (argv from sys.argv): the report says so and is
    printed."""
    from datetime import date

    from rlrefine.evaluation.report import main

    run = _run(tmp_path, "g0", {"algorithm": "grpo", "train_solver": "hops=1", "seed": 0}, _grpo(0, 0.9, 0.7))
    out = tmp_path / "out"
    monkeypatch.setattr("sys.argv", ["report.py", str(run), "--out", str(out)])
    path = main()
    text = path.read_text()
    assert text.splitlines()[2] == f"Made by `rlrefine report {run} --out {out}` on {date.today().isoformat()}."
    assert text.splitlines()[4] == "| group | runs (seeds) | problems | algorithm | train solver | RL minutes |"
    assert capsys.readouterr().out == text + "\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--out", "x"], "the following arguments are required: runs"),
        (["run"], "the following arguments are required: --out"),
        (["run", "--ou", "x"], "the following arguments are required: --out"),  # no abbreviation: --ou is no --out
    ],
)
def test_report_command_line_needs_runs_and_the_whole_out_flag(argv, message, capsys):
    from rlrefine.evaluation.report import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_run_without_config_or_rl_card_loads_with_empty_ones(tmp_path):
    from rlrefine.evaluation.report import load

    run = _run(tmp_path, "a", {}, [_cell("sft", "hops=1", 0.5)])
    (run / "config.yaml").unlink()
    (run / "rl" / "eval.json").unlink()
    results, config, training = load(run)
    assert results["cells"][0]["accuracy"] == 0.5 and config == {} and training == {}
    (run / "config.yaml").write_text("")  # an empty file is no mapping: still {}
    assert load(run)[1] == {}


def test_a_results_file_without_a_schema_is_schema_1(tmp_path):
    from rlrefine.core.protocols import UsageError
    from rlrefine.evaluation.report import load

    run = _run(tmp_path, "a", {}, [])
    (run / "results.json").write_text(json.dumps({"n": 100, "cells": []}))
    with pytest.raises(UsageError, match=r"has results schema 1; this report reads schema"):
        load(run)


def test_groups_alike_in_every_shown_setting_are_numbered(tmp_path):
    """Configs that differ only in a value's type ("1" vs 1) print the same: the groups get #1, #2; an algorithm
    that is not given labels its groups 'run'."""
    from rlrefine.evaluation.report import group

    a = _run(tmp_path, "a", {"algorithm": "grpo", "tag": "1", "seed": 0}, [])
    b = _run(tmp_path, "b", {"algorithm": "grpo", "tag": 1, "seed": 0}, [])
    c = _run(tmp_path, "c", {"algorithm": "ppo", "seed": 0}, [])
    d = _run(tmp_path, "d", {"learning_rate": 0.1}, [])
    e = _run(tmp_path, "e", {"learning_rate": 0.2}, [])
    labels = [g.label for g in group([a, b, c, d, e])]
    assert labels[:2] == ["grpo (tag=1) #1", "grpo (tag=1) #2"]
    assert labels[2:] == ["ppo", "run (learning_rate=0.1)", "run (learning_rate=0.2)"]


def test_the_label_prefers_one_setting_then_the_shortest(tmp_path):
    """Three groups: ``lr`` alone or ``warmup_ratio`` alone tells them apart (``lr``'s texts are shorter); ``x``
    alone does not. One setting beats any pair, however short."""
    from rlrefine.evaluation.report import group

    configs = [
        {"algorithm": "grpo", "x": 1, "lr": 1, "warmup_ratio": 0.1},
        {"algorithm": "grpo", "x": 1, "lr": 2, "warmup_ratio": 0.2},
        {"algorithm": "grpo", "x": 2, "lr": 3, "warmup_ratio": 0.3},
    ]
    runs = [_run(tmp_path, f"r{i}", c, []) for i, c in enumerate(configs)]
    assert [g.label for g in group(runs)] == ["grpo (lr=1)", "grpo (lr=2)", "grpo (lr=3)"]
    pairs = [
        {"algorithm": "grpo", "a": 1, "b": 1, "long_setting": "p"},
        {"algorithm": "grpo", "a": 1, "b": 2, "long_setting": "q"},
        {"algorithm": "grpo", "a": 2, "b": 1, "long_setting": "r"},
    ]
    runs = [_run(tmp_path, f"p{i}", c, []) for i, c in enumerate(pairs)]
    assert [g.label for g in group(runs)] == [
        "grpo (long_setting=p)", "grpo (long_setting=q)", "grpo (long_setting=r)"
    ]  # fmt: skip


def test_the_seed_run_dir_and_decomposer_do_not_split_a_group(tmp_path):
    from rlrefine.evaluation.report import group

    a = _run(tmp_path, "a", {"algorithm": "grpo", "seed": 0, "decomposer": "x"}, [])
    b = _run(tmp_path, "b", {"algorithm": "grpo", "seed": 1, "decomposer": "y"}, [])
    (found,) = group([a, b])
    assert found.label == "grpo" and found.runs == ["a", "b"] and len(found.results) == len(found.training) == 2


@pytest.mark.parametrize(
    "value, text",
    [
        (["solver", {"name": "format", "weight": 0.1}], "solver+format"),
        ([{"name": 3}], "3"),
        ([], "[]"),
        (["solver", {"weight": 0.1}], "['solver', {'weight': 0.1}]"),  # a spec without a name: as it is
        (["solver", 2], "['solver', 2]"),
        ("hops=1", "hops=1"),
    ],
)
def test_a_list_of_specs_is_shown_by_its_names(value, text):
    from rlrefine.evaluation.report import _short

    assert _short(value) == text


def test_a_reward_list_is_shown_whole_where_its_names_do_not_tell_the_groups_apart(tmp_path):
    from rlrefine.evaluation.report import group

    runs = [
        _run(tmp_path, f"r{w}", {"algorithm": "grpo", "rewards": [{"name": "format", "weight": w}]}, [])
        for w in (0.1, 0.2)
    ]
    assert [g.label for g in group(runs)] == [
        "grpo (rewards=[{'name': 'format', 'weight': 0.1}])", "grpo (rewards=[{'name': 'format', 'weight': 0.2}])"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "spec, found",
    [
        ("hops=1,memory=1", "hops=1,memory=1"),  # given as evaluated
        ("memory=1", "hops=1,memory=1"),  # one solver of its kind holds its settings
        ("hops=2", "hops=2"),  # none does: as given
        ("hops=1", "hops=1,memory=1"),  # hops=3 has another hops
        ("neural", "neural"),
        ("memory=2", "memory=2"),
        ("{name: [}", "{name: [}"),  # not a spec at all
    ],
)
def test_a_training_solver_is_found_among_the_evaluated_ones(spec, found):
    from rlrefine.evaluation.report import trained_on

    assert trained_on(spec, ["hops=1,memory=1", "neural", "hops=3"]) == found


def test_a_training_solver_matching_two_evaluated_ones_stays_as_given():
    from rlrefine.evaluation.report import trained_on

    assert trained_on("memory=1", ["hops=1,memory=1", "hops=2,memory=1"]) == "memory=1"
    assert trained_on("memory=1", ["hops=2", "hops=2,memory=1"]) == "hops=2,memory=1"


def test_holds_up_without_a_gain_on_the_training_solver_has_no_transfer_ratio(tmp_path):
    """RL no better than SFT on the training solver: gain 0, transfer undefined (not a division by zero); a 0
    accuracy is a value (0.000), not missing."""
    from rlrefine.evaluation.report import group, holds_up

    cells = [_cell("sft", "hops=1", 0.5), _cell("sft", "memory=1", 0.0), _cell("rl-x", "hops=1", 0.5)]
    cells += [_cell("rl-x", "memory=1", 0.0), _cell("rl-x", "neural", 0.4)]
    run = _run(tmp_path, "a", {"algorithm": "grpo", "train_solver": "hops=1"}, cells)
    (row,) = holds_up(group([run]))
    assert row == {
        "group": "grpo", "decomposer": "rl-x", "train_solver": "hops=1", "seeds": 1, "trained": 0.5,
        "unseen": pytest.approx(0.2), "gain_trained": 0.0, "gain_unseen": 0.0, "transfer": None,
    }  # fmt: skip


def test_a_dynamic_rl_row_holds_up_against_its_sft_starts_dynamic_row(tmp_path):
    from rlrefine.evaluation.report import group, holds_up

    cells = [_cell("sft", "hops=1", 0.1), _cell("sft", "memory=1", 0.1), _cell("rl-x", "hops=1", 0.5)]
    cells += [_cell("rl-x", "memory=1", 0.3), _cell("sft (dynamic)", "hops=1", 0.4)]
    cells += [_cell("sft (dynamic)", "memory=1", 0.2), _cell("rl-x (dynamic)", "hops=1", 0.8)]
    cells += [_cell("rl-x (dynamic)", "memory=1", 0.5)]
    run = _run(tmp_path, "a", {"algorithm": "grpo", "train_solver": "hops=1", "rollout": "dynamic"}, cells)
    static, dynamic = holds_up(group([run]))
    assert (static["gain_trained"], static["gain_unseen"]) == pytest.approx((0.4, 0.2))
    assert dynamic["decomposer"] == "rl-x (dynamic)"
    assert (dynamic["gain_trained"], dynamic["gain_unseen"], dynamic["transfer"]) == pytest.approx((0.4, 0.3, 0.75))


def test_holds_up_with_no_training_solver_cell(tmp_path):
    from rlrefine.evaluation.report import group, holds_up

    cells = [_cell("sft", "hops=1", 0.5), _cell("rl-x", "memory=1", 0.3), _cell("rl-x", "neural", 0.0, errors=100)]
    run = _run(tmp_path, "a", {"algorithm": "grpo", "train_solver": "hops=1"}, cells)
    (row,) = holds_up(group([run]))
    assert row["train_solver"] == "hops=1" and row["trained"] is None and row["gain_trained"] is None
    assert row["unseen"] == 0.3 and row["gain_unseen"] is None and row["transfer"] is None


def test_one_seed_shows_no_range_even_where_pooled_baselines_differ(tmp_path):
    """Two one-seed groups: the teacher row pools both runs' cells (0.2 and 0.4) but with one seed per group the
    table shows the mean alone; runs evaluated on different problems are flagged; no by-domain table for one
    domain."""
    from rlrefine.evaluation.report import group, markdown

    a = _run(tmp_path, "a", {"algorithm": "grpo"}, [_cell("teacher", "hops=1", 0.2, by_domain={"x": 0.2})])
    b = _run(tmp_path, "b", {"algorithm": "ppo"}, [_cell("teacher", "hops=1", 0.4)], rows_key="other")
    text = markdown(group([a, b]))
    assert "| teacher | 0.300 |" in text.splitlines()
    assert "**These runs were evaluated on different problems: their means are not comparable.**" in text
    assert "By domain" not in text and "Failures" not in text


def test_one_group_names_its_rows_by_the_decomposer_alone(tmp_path):
    """A report of one configuration: rows are the decomposers' own names; the by-domain table reads the training
    solver as evaluated (``memory=1`` is ``hops=1,memory=1``), and without a training solver the first solver."""
    from rlrefine.evaluation.report import group, markdown

    cells = [_cell("sft", "neural", 0.1, by_domain={"x": 0.0, "y": 0.2})]
    cells += [_cell("sft", "hops=1,memory=1", 0.5, by_domain={"x": 0.4, "y": 0.6}), _cell("rl-x", "neural", 0.3)]
    run = _run(tmp_path, "a", {"algorithm": "grpo", "train_solver": "memory=1"}, cells)
    lines = markdown(group([run])).splitlines()
    assert "| sft | 0.100 | 0.500 |" in lines and "| rl-x | 0.300 | — |" in lines
    assert (
        "## By domain (accuracy with hops=1,memory=1, mean over seeds)" in lines and "| sft | 0.400 | 0.600 |" in lines
    )
    assert "| rl-x | — | — |" in lines  # no cell with the training solver
    other = _run(tmp_path, "b", {"algorithm": "grpo"}, cells)
    lines = markdown(group([other])).splitlines()
    assert "## By domain (accuracy with neural, mean over seeds)" in lines and "| sft | 0.000 | 0.200 |" in lines


def test_report_help_says_what_it_does_and_what_each_argument_is(capsys):
    from rlrefine.evaluation.report import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert exit_.value.code == 0 and text.startswith("usage: rlrefine report [-h] --out OUT runs [runs ...]")
    assert (
        "``rlrefine report RUN_DIR [RUN_DIR ...] --out DIR``: how learned decomposers hold up across solvers, seeds"
        in text
    )
    assert "runs finished run folders (train.py --run_dir)" in text
    assert "--out OUT folder for report.md and the pictures" in text


def test_baselines_pool_across_groups_and_unset_settings_show_as_missing(tmp_path):
    """Two groups without an algorithm or training solver (one without an RL card at all) evaluated on different
    problems: the runs table shows the unset settings as missing, the warning follows it, and the no-decomposition
    and oracle baselines are one row each, pooled over both groups."""
    from rlrefine.evaluation.report import group, markdown

    a = _run(tmp_path, "a", {}, [_cell("none", "hops=1", 0.1), _cell("oracle", "hops=1", 0.9)])
    (a / "rl" / "eval.json").unlink()
    b = _run(tmp_path, "b", {"learning_rate": 0.1}, [_cell("none", "hops=1", 0.3), _cell("oracle", "hops=1", 0.7)],
             rows_key="other")  # fmt: skip
    assert markdown(group([a, b])) == (
        "# rlrefine report\n\n"
        "| group | runs (seeds) | problems | algorithm | train solver | RL minutes |\n|---|---|---|---|---|---|\n"
        "| run (learning_rate=None) | a (1) | 100 | — | — | — |\n"
        "| run (learning_rate=0.1) | b (1) | 100 | — | — | 2.0 |\n\n"
        "**These runs were evaluated on different problems: their means are not comparable.**\n\n"
        "## Accuracy (mean over seeds, worst–best)\n\n"
        "| decomposer | hops=1 |\n|---|---|\n| none | 0.200 |\n| oracle | 0.800 |\n\n"
        "## Holds up: the training solver vs. the solvers it never saw\n\n"
        "| decomposer | seeds | train solver | acc (trained) | mean acc (unseen) | gain trained | gain unseen "
        "| transfer ratio |\n|---|---|---|---|---|---|---|---|\n\n"
        "## Cost and format (mean over seeds)\n\n"
        "| decomposer | solver | sub-q | valid format | $ / 1k problems |\n|---|---|---|---|---|\n"
        "| none | hops=1 | 2.00 | 1.00 | 0.0500 |\n| oracle | hops=1 | 2.00 | 1.00 | 0.0500 |\n"
    )


@pytest.mark.parametrize(
    "cell, usable",
    [
        ({"n": 1}, True),  # no error count: none failed
        ({"n": 1, "errors": 0}, True),
        ({"n": 1, "errors": 1}, False),  # every problem failed
        ({"errors": 0}, False),  # no problem count: nothing was evaluated
    ],
)
def test_a_cell_is_usable_while_some_problem_did_not_fail(cell, usable):
    from rlrefine.evaluation.report import _usable

    assert _usable(cell) is usable


def test_a_newer_results_schema_is_refused_by_its_number(tmp_path):
    from rlrefine.core.protocols import UsageError
    from rlrefine.evaluation.report import load

    run = _run(tmp_path, "a", {}, [], schema=SCHEMA + 1)
    with pytest.raises(UsageError, match=rf"has results schema {SCHEMA + 1}; this report reads schema {SCHEMA}: "):
        load(run)


def test_settings_in_another_key_order_or_of_non_json_types_group_and_label(tmp_path):
    """config.yaml files written by hand: the same settings in another key order (nested too) are one group; a
    date (YAML reads it as one) groups and labels by its text."""
    from rlrefine.evaluation.report import group

    a = _run(tmp_path, "a", {}, [])
    (a / "config.yaml").write_text("seed: 0\nalgorithm: grpo\nsft: {lr: 1, epochs: 2}\nstarted: 2024-01-01\n")
    b = _run(tmp_path, "b", {}, [])
    (b / "config.yaml").write_text("started: 2024-01-01\nsft: {epochs: 2, lr: 1}\nalgorithm: grpo\nseed: 1\n")
    c = _run(tmp_path, "c", {}, [])
    (c / "config.yaml").write_text("algorithm: grpo\nseed: 0\nsft: {lr: 1, epochs: 2}\nstarted: 2024-02-01\n")
    groups = group([a, b, c])
    assert [(g.label, g.runs) for g in groups] == [
        ("grpo (started=2024-01-01)", ["a", "b"]), ("grpo (started=2024-02-01)", ["c"])
    ]  # fmt: skip


def test_a_nested_setting_in_another_key_order_does_not_set_groups_apart(tmp_path):
    """Two groups whose only shown difference prints alike ("1" vs 1) and whose nested settings differ only in key
    order: the label does not pick the nested setting (it is the same), the groups are numbered."""
    from rlrefine.evaluation.report import group

    a = _run(tmp_path, "a", {}, [])
    (a / "config.yaml").write_text("algorithm: grpo\ntag: '1'\nsft: {lr: 1, epochs: 2}\n")
    b = _run(tmp_path, "b", {}, [])
    (b / "config.yaml").write_text("algorithm: grpo\ntag: 1\nsft: {epochs: 2, lr: 1}\n")
    assert [g.label for g in group([a, b])][0] == "grpo (tag=1) #1"


def test_a_training_solver_given_in_another_order_is_the_evaluated_one():
    from rlrefine.evaluation.report import trained_on

    assert trained_on("memory=1,hops=1", ["hops=1,memory=1", "neural"]) == "hops=1,memory=1"


def test_holds_up_without_a_training_solver_counts_every_solver_as_unseen(tmp_path):
    from rlrefine.evaluation.report import group, holds_up

    cells = [_cell("sft", "hops=1", 0.4), _cell("rl-x", "hops=1", 0.5), _cell("rl-x", "memory=1", 0.3)]
    (row,) = holds_up(group([_run(tmp_path, "a", {"algorithm": "grpo"}, cells)]))
    assert row == {
        "group": "grpo", "decomposer": "rl-x", "train_solver": "", "seeds": 1, "trained": None,
        "unseen": pytest.approx(0.4), "gain_trained": None, "gain_unseen": pytest.approx(0.1), "transfer": None,
    }  # fmt: skip


@pytest.mark.parametrize("failed", ["rl-x", "sft"])
def test_holds_up_has_no_training_gain_where_either_training_cell_failed(tmp_path, failed):
    from rlrefine.evaluation.report import group, holds_up

    cells = [_cell(d, "hops=1", 0.0, errors=100) if d == failed else _cell(d, "hops=1", 0.6) for d in ("sft", "rl-x")]
    cells += [_cell("sft", "memory=1", 0.2), _cell("rl-x", "memory=1", 0.5)]
    (row,) = holds_up(group([_run(tmp_path, "a", {"algorithm": "grpo", "train_solver": "hops=1"}, cells)]))
    assert row["gain_trained"] is None and row["transfer"] is None and row["gain_unseen"] == pytest.approx(0.3)
    assert row["trained"] == (None if failed == "rl-x" else 0.6)


def test_a_run_without_cells_reports_empty_tables(tmp_path):
    from rlrefine.evaluation.report import group, markdown

    text = markdown(group([_run(tmp_path, "a", {"algorithm": "grpo", "train_solver": "hops=1"}, [])]))
    assert "| decomposer |\n|---|\n\n## Holds up" in text and "By domain" not in text
