"""Compare decomposers across seeds and algorithms: aggregate the results of finished runs into one table.

    # three seeds of the default pipeline, then RLOO and RFT from seed 0's SFT student at GRPO's RL time
    for s in 0 1 2; do accelerate launch rlrefine/train.py --seed $s --run_dir runs/seed-$s; done
    accelerate launch rlrefine/train.py --algorithm rft --decomposer runs/seed-0/sft --rl_minutes 3 --run_dir runs/rft-0
    python experiments/compare.py runs/seed-* runs/rft-0 --out runs/compare.md   # and runs/compare.png

For every (decomposer, solver) cell it reports the mean, the worst and the best accuracy over the runs that
hold it, with mean sub-questions, plus each run's RL wall clock, pass@k and reward overhead; "training
solver" columns are what the RL stage optimised, the others are solvers it never saw.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from statistics import mean

from rlrefine.atomic import write_text
from rlrefine.plots import plot_runs


def load(run: Path) -> dict:
    results = json.loads((run / "results.json").read_text())
    facts = (
        json.loads((run / "rl" / "eval.json").read_text())["training"] if (run / "rl" / "eval.json").exists() else {}
    )
    return {"run": run.name, "results": results, "rl": facts}


def by_cell(runs: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Every run's result for each (decomposer, solver) cell."""
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for run in runs:
        for cell in run["results"]["cells"]:
            cells[cell["decomposer"], cell["solver"]].append(cell)
    return cells


def table(runs: list[dict]) -> str:
    cells = by_cell(runs)
    lines = [f"# {len(runs)} runs: {', '.join(r['run'] for r in runs)}", ""]
    if len({r["results"].get("rows_key") for r in runs}) > 1:  # a mean over different problems is not a mean
        sizes = ", ".join(f"{r['run']} n={r['results']['n']}" for r in runs)
        lines += [f"**Warning: these runs were evaluated on different problems ({sizes}).**", ""]
    domains = sorted({d for found in cells.values() for c in found for d in c.get("by_domain", {})})
    lines += [
        "| decomposer | solver | runs | mean acc | worst | best | mean sub-q | " + " | ".join(domains) + " |",
        "|---" * (7 + len(domains)) + "|",
    ]
    for (decomposer, solver), found in cells.items():
        acc = [c["accuracy"] for c in found]
        by_domain = [f"{mean(c['by_domain'].get(d, float('nan')) for c in found):.3f}" for d in domains]
        lines.append(
            f"| {decomposer} | {solver} | {len(found)} | {mean(acc):.3f} | {min(acc):.3f} | {max(acc):.3f} | "
            f"{mean(c['mean_subquestions'] for c in found):.2f} | " + " | ".join(by_domain) + " |"
        )
    lines += [
        "",
        "| run | algorithm | RL steps | RL minutes | reward share of RL time | pass@k (sft -> rl) |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        rl, passk = run["rl"], run["results"].get("pass_at_k", {})
        p = " -> ".join(f"{v['pass_at_k']:.3f}" for v in passk.values())
        steps = rl.get("steps", sum(r.get("steps", 0) for r in rl.get("rounds", [])))
        share = rl.get("reward_share")
        lines.append(
            f"| {run['run']} | {rl.get('algorithm', '?')} | {steps} | {rl.get('rl_minutes', 0):.1f} | "
            f"{'' if share is None else f'{share:.1%}'} | {p} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs = [load(run) for run in args.runs]
    text = table(runs)
    if args.out:
        write_text(args.out, text)
        accuracy = {key: [c["accuracy"] for c in found] for key, found in by_cell(runs).items()}
        plot_runs(accuracy, ", ".join(r["run"] for r in runs), args.out.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()
