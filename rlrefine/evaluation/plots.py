"""Plots: a run's accuracy per (decomposer, solver) cell and its RL learning curve; for reports over several runs,
an accuracy heatmap, training curves per group and cost against accuracy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import mean

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


def plot_heatmap(decomposers, solvers, stats: Mapping[tuple[str, str], tuple | None], out: str | Path) -> Path:
    """Decomposer x solver accuracy: the mean in colour and text, worst-best under it; a missing cell stays blank."""
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(solvers), 0.8 + 0.55 * len(decomposers)))
    grid = [[(stats.get((d, s)) or (float("nan"),))[0] for s in solvers] for d in decomposers]
    ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i, d in enumerate(decomposers):
        for j, s in enumerate(solvers):
            stat = stats.get((d, s))
            if stat is None:
                ax.text(j, i, "—", ha="center", va="center", fontsize=8)
                continue
            spread = "" if stat[1] == stat[2] else f"\n{stat[1]:.2f}–{stat[2]:.2f}"
            ax.text(j, i, f"{stat[0]:.2f}{spread}", ha="center", va="center", fontsize=7,
                    color="black" if stat[0] > 0.6 else "white")  # fmt: skip
    ax.set_xticks(range(len(solvers)), solvers, rotation=20, fontsize=8)
    ax.set_yticks(range(len(decomposers)), decomposers, fontsize=8)
    ax.set_title("accuracy: mean over seeds (worst–best)", fontsize=9)
    return _save(fig, out)


CURVES = {  # panel title -> how a logged key is picked
    "reward (weighted sum)": lambda k: k == "reward",
    "training solver accuracy": lambda k: k.startswith("solver[") and k.endswith("/accuracy"),
    "mean sub-questions": lambda k: k == "decomposer/subquestions",
    "entropy / KL": lambda k: k in ("entropy", "kl", "ppo/kl"),
}


def plot_curves(histories: Mapping[str, Sequence[Sequence[Mapping]]], out: str | Path) -> Path:
    """Per group (a label and its seeds' log histories), each panel's metrics per RL step, averaged over seeds."""
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.4), squeeze=False)
    for ax, (title, pick) in zip(axes[0], CURVES.items()):
        for label, runs in histories.items():
            series: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
            for log in runs:
                for entry in log:
                    for key, value in entry.items():
                        if pick(key) and "step" in entry and isinstance(value, (int, float)):
                            series[key][entry["step"]].append(value)
            for key, by_step in series.items():
                steps = sorted(by_step)
                ax.plot(steps, [mean(by_step[s]) for s in steps], label=f"{label}: {key}", linewidth=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("RL step", fontsize=8)
        if ax.lines:
            ax.legend(fontsize=6)
    return _save(fig, out)


def plot_cost(points: Mapping[str, tuple[float, float]], out: str | Path) -> Path:
    """Accuracy against $ per 1k problems, one point per (decomposer, solver)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (dollars, accuracy) in points.items():
        ax.scatter(dollars, accuracy, s=14)
        ax.annotate(name, (dollars, accuracy), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel("$ per 1k problems (price table)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.05, 1.05)
    return _save(fig, out)
