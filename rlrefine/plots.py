"""Plots of a run: accuracy per (decomposer, solver) cell, and the RL stage's learning curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402


def plot_run(results: Mapping, log_history: Sequence[Mapping], out: str | Path) -> Path:
    """``out`` (PNG): grouped bars of accuracy (decomposers x solvers) and, when there is an RL log,
    the training solver's accuracy and the mean number of sub-questions per logged step."""
    cells = results["cells"]
    decomposers = list(dict.fromkeys(c["decomposer"] for c in cells))
    solvers = list(dict.fromkeys(c["solver"] for c in cells))
    accuracy = {(c["decomposer"], c["solver"]): c["accuracy"] for c in cells}
    curve = [h for h in log_history if any(k.endswith("/accuracy") for k in h)]
    fig, axes = plt.subplots(1, 2 if curve else 1, figsize=(13 if curve else 8, 4.2), squeeze=False)
    bars = axes[0][0]
    width = 0.8 / len(solvers)
    for j, solver in enumerate(solvers):
        xs = [i + j * width for i in range(len(decomposers))]
        bars.bar(xs, [accuracy.get((d, solver), 0.0) for d in decomposers], width, label=solver)
    bars.set_xticks([i + 0.4 - width / 2 for i in range(len(decomposers))], decomposers, rotation=20)
    bars.set_ylim(0, 1.3)
    bars.set_ylabel(f"accuracy ({results['n']} problems)")
    bars.legend(fontsize=7, ncol=3, loc="upper center")
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
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
