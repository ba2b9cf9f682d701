"""Plots: a run's accuracy per (decomposer, solver) cell and its RL learning curve; several runs compared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402


def plot_run(results: Mapping, log_history: Sequence[Mapping], out: str | Path) -> Path:
    """``out`` (PNG): grouped bars of accuracy (decomposers x solvers) and, when there is an RL log,
    the training solver's accuracy and the mean number of sub-questions per logged step."""
    accuracy = {(c["decomposer"], c["solver"]): c["accuracy"] for c in results["cells"]}
    curve = [h for h in log_history if any(k.endswith("/accuracy") for k in h)]
    fig, axes = plt.subplots(1, 2 if curve else 1, figsize=(13 if curve else 8, 4.2), squeeze=False)
    _bars(axes[0][0], {key: [value] for key, value in accuracy.items()}, f"accuracy ({results['n']} problems)")
    if curve:
        line = axes[0][1]
        steps = [h["step"] for h in curve]
        key = next(k for k in curve[0] if k.endswith("/accuracy"))
        line.plot(steps, [h[key] for h in curve], label=key)
        line.set_xlabel("RL step")
        line.set_ylim(0, 1.05)
        line.set_ylabel("training solver accuracy (sampled)")
        if "decomposer/subquestions" in curve[0]:
            twin = line.twinx()
            twin.plot(steps, [h["decomposer/subquestions"] for h in curve], color="tab:orange")
            twin.set_ylabel("mean sub-questions", color="tab:orange")
        line.legend(fontsize=7, loc="lower right")
    return _save(fig, out)


def plot_runs(accuracy: Mapping[tuple[str, str], Sequence[float]], title: str, out: str | Path) -> Path:
    """``out`` (PNG): mean accuracy per (decomposer, solver) over several runs, whiskers from worst to best."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    _bars(ax, accuracy, "accuracy: mean, worst to best run")
    ax.set_title(title, fontsize=9)
    return _save(fig, out)


def _bars(ax, accuracy: Mapping[tuple[str, str], Sequence[float]], ylabel: str) -> None:
    """Grouped bars, one group per decomposer and one bar per solver; whiskers where a cell has several values."""
    decomposers = list(dict.fromkeys(d for d, _ in accuracy))
    solvers = list(dict.fromkeys(s for _, s in accuracy))
    width = 0.8 / len(solvers)
    for j, solver in enumerate(solvers):
        values = [accuracy.get((d, solver), [0.0]) for d in decomposers]
        means = [sum(v) / len(v) for v in values]
        spread = [
            [max(m - min(v), 0) for m, v in zip(means, values)],
            [max(max(v) - m, 0) for m, v in zip(means, values)],
        ]
        xs = [i + j * width for i in range(len(decomposers))]
        ax.bar(xs, means, width, label=solver, yerr=spread if any(len(v) > 1 for v in values) else None, capsize=2)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(decomposers))], decomposers, rotation=20)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=3, loc="upper center")


def _save(fig, out: str | Path) -> Path:
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
