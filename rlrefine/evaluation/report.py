"""``rlrefine report RUN_DIR [RUN_DIR ...] --out DIR``: how learned decomposers hold up across solvers, seeds and
algorithms, from finished runs' files alone (``results.json``, ``config.yaml``, ``rl/eval.json``; no model loads).

Runs whose configs differ only in ``seed`` (and where they were written) form one group; each cell is reported as the
mean over the group's seeds with the worst and best. Writes ``report.md`` and three pictures: ``heatmap.png``
(decomposer x solver), ``curves.png`` (training curves per group) and ``cost.png`` (accuracy against $ per 1k
problems). The "holds up" table puts each RL decomposer's accuracy on the solver it was trained against beside its
mean over the solvers it never saw, and the transfer ratio: gain over its SFT start on unseen solvers / gain on the
training solver. A missing or failed cell is shown as missing (``—``), never as 0.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from statistics import mean

import yaml

from rlrefine.core.protocols import UsageError
from rlrefine.core.tables import markdown_table
from rlrefine.evaluation.evaluate import SCHEMA, dynamic_label

GROUPING_IGNORES = {"seed", "run_dir", "decomposer"}  # what may differ between the seeds of one configuration
MISSING = "—"


@dataclass
class Group:
    label: str
    config: dict
    runs: list[str] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    training: list[dict] = field(default_factory=list)

    def cells(self) -> dict[tuple[str, str], list[dict]]:
        found: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for results in self.results:
            for cell in results["cells"]:
                found[cell["decomposer"], cell["solver"]].append(cell)
        return found


def load(run: Path) -> tuple[dict, dict, dict]:
    """A run's results, config and RL facts; a results file of another schema is refused by name."""
    path = run / "results.json"
    if not path.is_file():
        raise UsageError(f"{run}: no results.json (not a finished run)")
    results = json.loads(path.read_text())
    if results.get("schema", 1) != SCHEMA:
        raise UsageError(
            f"{path} has results schema {results.get('schema', 1)}; this report reads schema {SCHEMA}: "
            f"re-evaluate the run with this version (rlrefine eval, or train.py --resume)"
        )
    config = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    card = run / "rl" / "eval.json"
    training = json.loads(card.read_text()) if card.is_file() else {}
    return results, config or {}, training


def group(runs: list[Path]) -> list[Group]:
    """Runs grouped by their config with the seed left out; each group labelled by what sets it apart."""
    groups: dict[str, Group] = {}
    for run in runs:
        results, config, training = load(run)
        key = json.dumps({k: v for k, v in config.items() if k not in GROUPING_IGNORES}, sort_keys=True, default=str)
        found = groups.setdefault(key, Group("", config))
        found.runs.append(run.name)
        found.results.append(results)
        found.training.append(training)
    found = list(groups.values())
    for algorithm in dict.fromkeys(g.config.get("algorithm") for g in found):
        kin = [g for g in found if g.config.get("algorithm") == algorithm]
        for g, extra in zip(kin, _apart(kin)):  # named by the algorithm and what sets it apart from its kin
            g.label = str(algorithm or "run") + (f" ({extra})" if extra else "")
    alike = {label: [g for g in found if g.label == label] for label in {g.label for g in found}}
    for same in alike.values():  # still alike: number them, all from the labels before any is renamed
        for number, g in enumerate(same if len(same) > 1 else [], start=1):
            g.label = f"{g.label} #{number}"
    return found


def _apart(kin: list[Group]) -> list[str]:
    """Per group, the fewest settings (shortest when several would do) that tell these groups apart, e.g.
    ``train_solver=neural`` rather than every setting that differs; a reward list is shown by its names when they
    suffice (``rewards=multi_solver+format``). Students of different models are named by their ``base_model``, not
    by a shorter setting that came with it (a real model's config changes its steps and learning rates too)."""
    keys = sorted({k for g in kin for k in g.config} - GROUPING_IGNORES)
    full = {k: [json.dumps(g.config.get(k), sort_keys=True, default=str) for g in kin] for k in keys}
    differing = [k for k in keys if len(set(full[k])) > 1]
    texts = {}
    for k in differing:
        short = [_short(g.config.get(k)) for g in kin]
        texts[k] = short if len(set(short)) == len(set(full[k])) else [str(g.config.get(k)) for g in kin]

    def tells_apart(keys: tuple[str, ...]) -> bool:
        return len({tuple(texts[k][i] for k in keys) for i in range(len(kin))}) == len(kin)

    if "base_model" in differing and tells_apart(("base_model",)):  # students of other models: named by the model
        return [f"base_model={texts['base_model'][i]}" for i in range(len(kin))]
    chosen = tuple(differing)
    for size in range(1, len(differing) + 1):
        apart = [c for c in combinations(differing, size) if tells_apart(c)]
        if apart:
            chosen = min(apart, key=lambda c: sum(len(t) for k in c for t in texts[k]))
            break
    return [", ".join(f"{k}={texts[k][i]}" for k in chosen) for i in range(len(kin))]


def _short(value: object) -> str:
    """A list of specs by their names (``solver+format``); anything else as it is."""
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, str) or (isinstance(v, dict) and "name" in v) for v in value)
    ):
        return "+".join(v if isinstance(v, str) else str(v["name"]) for v in value)
    return str(value)


def _usable(cell: dict) -> bool:
    return cell.get("errors", 0) < cell.get("n", 0)


def _stat(cells: list[dict], key: str = "accuracy") -> tuple[float, float, float] | None:
    values = [c[key] for c in cells if _usable(c)]
    return (mean(values), min(values), max(values)) if values else None


def _fmt(stat: tuple[float, float, float] | None, seeds: int) -> str:
    if stat is None:
        return MISSING
    return f"{stat[0]:.3f}" if seeds == 1 or stat[1] == stat[2] else f"{stat[0]:.3f} ({stat[1]:.3f}–{stat[2]:.3f})"


def _rows(groups: list[Group]) -> tuple[list[str], list[str], dict[tuple[str, str], list[dict]]]:
    """Decomposer rows (baselines once, learned ones per group) x solver columns, with every seed's cells."""
    table: dict[tuple[str, str], list[dict]] = defaultdict(list)
    shared = {"none", "oracle", "teacher"}
    for g in groups:
        for (decomposer, solver), cells in g.cells().items():
            if decomposer == "sft" and g.config.get("decomposer"):
                continue  # it started from another run's student: that run's row shows it
            name = decomposer if decomposer in shared or len(groups) == 1 else f"{g.label}: {decomposer}"
            table[name, solver].extend(cells)
    decomposers = list(dict.fromkeys(d for d, _ in table))
    solvers = list(dict.fromkeys(s for _, s in table))
    return decomposers, solvers, table


def trained_on(spec: str, solvers: list[str]) -> str:
    """The evaluated solver a run trained against: its spec names it as given (``memory=1``) and evaluation by its
    full name (``hops=1,memory=1``), so a spec matches the one solver of its kind whose settings include its own.

    >>> trained_on("memory=1", ["hops=1", "hops=1,memory=1", "neural"])
    'hops=1,memory=1'
    """
    if spec in solvers:
        return spec
    from rlrefine.core.registry import parse_spec

    try:
        name, settings = parse_spec("solver", spec)
        found = []
        for solver in solvers:
            other, given = parse_spec("solver", solver)
            if other == name and settings.items() <= given.items():
                found.append(solver)
    except ValueError:
        return spec
    return found[0] if len(found) == 1 else spec


def trained_with(spec: str, solvers: list[str]) -> list[str]:
    """The evaluated solvers a run trained against: a solver mix's each (``{name: mix, solvers: [...]}``), else the one
    ``trained_on`` finds.

    >>> trained_with("{name: mix, solvers: [hops=1, memory=1]}", ["hops=1", "hops=1,memory=1", "neural"])
    ['hops=1', 'hops=1,memory=1']
    """
    from rlrefine.core.registry import parse_spec

    try:
        name, settings = parse_spec("solver", spec)
    except ValueError:
        return [spec]
    parts = settings.get("solvers") if name == "mix" else None
    return [trained_on(str(p), solvers) for p in parts] if isinstance(parts, list) else [trained_on(spec, solvers)]


def holds_up(groups: list[Group]) -> list[dict]:
    """Per RL decomposer: training-solver accuracy, mean over unseen solvers, and the transfer ratio against the
    SFT decomposer it started from, in the same mode (means over seeds): a dialogue student's dynamic row is measured
    against its SFT start's dynamic row. A run trained against a solver mix is measured on the mean of its solvers,
    none of which is unseen."""
    out = []
    for g in groups:
        cells = g.cells()
        for decomposer in dict.fromkeys(d for d, _ in cells):
            if not decomposer.startswith("rl-"):
                continue
            solvers = [s for d, s in cells if d == decomposer]
            train = trained_with(str(g.config.get("train_solver", "")), solvers)
            unseen = [s for s in solvers if s not in train]
            acc = {s: _stat(cells[decomposer, s]) for s in solvers}
            start = dynamic_label("sft") if decomposer.endswith(dynamic_label("")) else "sft"
            sft = {s: _stat(cells.get((start, s), [])) for s in solvers}
            row = {"group": g.label, "decomposer": decomposer, "train_solver": " + ".join(train), "seeds": len(g.runs)}
            scored = all(acc.get(s) for s in train)
            row["trained"] = mean(acc[s][0] for s in train) if scored else None
            known = [s for s in unseen if acc[s] is not None]
            row["unseen"] = mean(acc[s][0] for s in known) if known else None
            both = [s for s in known if sft[s] is not None]
            paired = scored and all(sft.get(s) for s in train)
            gain_train = mean(acc[s][0] - sft[s][0] for s in train) if paired else None
            gain_unseen = mean(acc[s][0] - sft[s][0] for s in both) if both else None
            row["gain_trained"], row["gain_unseen"] = gain_train, gain_unseen
            row["transfer"] = gain_unseen / gain_train if gain_train and gain_unseen is not None else None
            out.append(row)
    return out


def _runs_table(groups: list[Group]) -> list[str]:
    """One line per group: its runs, problems, algorithm, training solver and mean RL minutes."""
    runs = []
    for g in groups:
        minutes = [t.get("training", {}).get("rl_minutes") for t in g.training]
        minutes = [m for m in minutes if m is not None]
        n = sorted({r["n"] for r in g.results})
        runs.append(
            [g.label, f"{', '.join(g.runs)} ({len(g.runs)})", "/".join(map(str, n))]
            + [g.config.get("algorithm", MISSING), g.config.get("train_solver", MISSING)]
            + [f"{mean(minutes):.1f}" if minutes else MISSING]
        )
    return markdown_table(["group", "runs (seeds)", "problems", "algorithm", "train solver", "RL minutes"], runs)


def markdown(groups: list[Group]) -> str:
    decomposers, solvers, table = _rows(groups)
    lines = ["# rlrefine report", "", *_runs_table(groups)]
    if len({r.get("rows_key") for g in groups for r in g.results}) > 1:
        lines += ["", "**These runs were evaluated on different problems: their means are not comparable.**"]
    seeds = max(len(g.runs) for g in groups)
    lines += ["", "## Accuracy (mean over seeds, worst–best)", ""]
    accuracy = [[d, *(_fmt(_stat(table.get((d, s), [])), seeds) for s in solvers)] for d in decomposers]
    lines += markdown_table(["decomposer", *solvers], accuracy)
    lines += ["", "## Holds up: the training solver vs. the solvers it never saw", ""]

    def num(value, signed=False):
        return MISSING if value is None else (f"{value:+.3f}" if signed else f"{value:.3f}")

    header = ["decomposer", "seeds", "train solver", "acc (trained)", "mean acc (unseen)", "gain trained"]
    header += ["gain unseen", "transfer ratio"]
    held = [
        [f"{row['group']}: {row['decomposer']}", row["seeds"], row["train_solver"], num(row["trained"])]
        + [num(row["unseen"]), num(row["gain_trained"], True), num(row["gain_unseen"], True), num(row["transfer"])]
        for row in holds_up(groups)
    ]
    lines += markdown_table(header, held)
    domains = sorted({d for cells in table.values() for c in cells for d in c.get("by_domain", {})})
    train = trained_on(str(groups[0].config.get("train_solver", solvers[0] if solvers else "")), solvers)
    if len(domains) > 1 and train in solvers:
        lines += ["", f"## By domain (accuracy with {train}, mean over seeds)", ""]
        by_domain = []
        for d in decomposers:
            cells = [c for c in table.get((d, train), []) if _usable(c)]
            per = [[c["by_domain"][x] for c in cells if x in c.get("by_domain", {})] for x in domains]
            by_domain.append([d, *(f"{mean(v):.3f}" if v else MISSING for v in per)])
        lines += markdown_table(["decomposer", *domains], by_domain)
    lines += ["", "## Cost and format (mean over seeds)", ""]
    cost = []
    for d in decomposers:
        for s in solvers:
            cells = [c for c in table.get((d, s), []) if _usable(c)]
            if cells:
                cost.append(
                    [d, s, f"{mean(c['mean_subquestions'] for c in cells):.2f}"]
                    + [
                        f"{mean(c['valid_format'] for c in cells):.2f}",
                        f"{mean(c['cost_usd_per_1k'] for c in cells):.4f}",
                    ]
                )
    lines += markdown_table(["decomposer", "solver", "sub-q", "valid format", "$ / 1k problems"], cost)
    failed = [(d, s, c) for (d, s), cells in table.items() for c in cells if c.get("errors")]
    if failed:
        lines += ["", "Failures:", ""]
        lines += [f"- {d} x {s}: {c['errors']} of {c['n']}, first: {c.get('first_error')}" for d, s, c in failed]
    return "\n".join(lines) + "\n"


def report(runs: list[Path], out: Path, made_by: str | None = None) -> Path:
    """Write ``out/report.md`` and its pictures; ``made_by`` (the command that made the runs and this report) is
    stated under the title with today's date, so a committed report says how to make it again."""
    from datetime import date

    from rlrefine.core.atomic import write_text
    from rlrefine.evaluation.plots import plot_cost, plot_curves, plot_heatmap

    groups = group(runs)
    decomposers, solvers, table = _rows(groups)
    stats = {key: _stat(cells) for key, cells in table.items()}
    plot_heatmap(decomposers, solvers, stats, out / "heatmap.png")
    plot_curves({g.label: [t.get("log_history", []) for t in g.training] for g in groups}, out / "curves.png")
    cost = {
        f"{d} | {s}": (mean(c["cost_usd_per_1k"] for c in cells), mean(c["accuracy"] for c in cells))
        for (d, s), all_cells in table.items()
        if (cells := [c for c in all_cells if _usable(c)])
    }
    plot_cost(cost, out / "cost.png")
    text = markdown(groups)
    if made_by:
        title, _, rest = text.partition("\n")
        text = f"{title}\n\nMade by `{made_by}` on {date.today().isoformat()}.\n{rest}"
    write_text(out / "report.md", text + "\n![accuracy](heatmap.png)\n![training](curves.png)\n"
               "![cost](cost.png)\n")  # fmt: skip
    return out / "report.md"


def main(argv: list[str] | None = None) -> Path:
    import argparse
    import shlex
    import sys

    parser = argparse.ArgumentParser(prog="rlrefine report", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders (train.py --run_dir)")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.md and the pictures")
    args = parser.parse_args(argv)
    path = report(
        args.runs, args.out, made_by=shlex.join(["rlrefine", "report", *(sys.argv[1:] if argv is None else argv)])
    )
    print(path.read_text())
    return path
