"""The paper's Table 1 on the embedded world: distill the decomposer (SD-T, SD-R) vs. distill the solver (SE-T, SE-A).

    python experiments/distill_which_part.py --out runs/table1 [--seeds 0] [--limit 1000]
    python experiments/distill_which_part.py --out runs/table1-quick --quick      # minutes: what CI runs

Trains (or reuses, when already in --out) four students from the bundled base model with ``rlrefine sft``,
evaluates every (decomposer x solver) cell on the test split with ``rlrefine eval``, and writes
``table.md``: rows teacher/teacher-solver, SD-T, SD-R, teacher+SE-T, teacher+SE-A; columns accuracy and
cost (tokens and $ under the price table). Also reports the SD-T student's pass@8 with ``hops=1`` (RL headroom).
"""

from __future__ import annotations

import json
from pathlib import Path

from _runs import parser

from rlrefine.commands.cli import main as cli
from rlrefine.core.atomic import write_text
from rlrefine.core.tables import markdown_table
from rlrefine.data import load_split
from rlrefine.evaluation.evaluate import evaluate, pass_at_k

STUDENTS = {  # name -> (role, variant, steps)
    "sd-t": ("decomposer", "sd-t", 600),
    "sd-r": ("decomposer", "sd-r", 600),
    "se-t": ("solver", "se-t", 1500),
    "se-a": ("solver", "se-a", 1500),
}


def train(out: Path, seed: int, data: str = "world", quick: bool = False, config: str | None = None) -> dict[str, Path]:
    paths = {}
    for name, (role, variant, steps) in STUDENTS.items():
        steps = 10 if quick else steps
        path = out / name
        if not (path / "config.json").exists():
            argv = [
                "sft",
                "--role",
                role,
                "--variant",
                variant,
                "--output_dir",
                str(path),
                "--max_steps",
                str(steps),
                "--seed",
                str(seed),
                "--eval_limit",
                "0",
                "--data",
                data,
                *(["--config", config] if config else []),
            ]
            if cli(argv) != 0:
                raise SystemExit(f"training {name} failed")
        paths[name] = path
    return paths


def main() -> None:
    cli_args = parser(__doc__.split("\n\n")[0])
    cli_args.add_argument("--limit", type=int, default=1000, help="test problems evaluated")
    args = cli_args.parse_args()
    out, seed = args.out, args.seeds[0]
    data, limit = ("world:small", 20) if args.quick else ("world", args.limit)
    paths = train(out, seed, data, args.quick, args.config)
    rows = list(load_split(data, "test", limit))
    decomposers = ["teacher", f"sd-t={paths['sd-t']}", f"sd-r={paths['sd-r']}"]
    solvers = ["hops=1", "hops=2", f"model:{paths['se-t']}", f"model:{paths['se-a']}"]
    results = evaluate(rows, decomposers, solvers, out=out / "eval")
    cell = {(c["decomposer"], c["solver"]): c for c in results["cells"]}
    se_t, se_a = f"model:{paths['se-t']}", f"model:{paths['se-a']}"
    table = [
        ("teacher / teacher-solver (hops=2)", "teacher", "hops=2"),
        ("teacher / deployed solver (hops=1)", "teacher", "hops=1"),
        ("SD-T / hops=1", "sd-t", "hops=1"),
        ("SD-R / hops=1", "sd-r", "hops=1"),
        ("SD-T / hops=2", "sd-t", "hops=2"),
        ("teacher / SE-T", "teacher", se_t),
        ("teacher / SE-A", "teacher", se_a),
    ]
    lines = [
        f"# Distill the decomposer or the solver? ({len(rows)} test problems, seed {seed})",
        "",
    ]
    accuracy = []
    for label, d, s in table:
        c, t = cell[d, s], cell[d, s]["tokens"]
        accuracy.append(
            [label, f"{c['accuracy']:.3f}", f"{t['decomposer_in']}/{t['decomposer_out']}"]
            + [f"{t['solver_in']}/{t['solver_out']}", f"{c['cost_usd_per_1k']:.4f}"]
        )
    header = ["decomposer / solver", "accuracy", "decomposer tokens in/out", "solver tokens in/out"]
    lines += markdown_table([*header, "$ per 1k problems"], accuracy)
    headroom = {k: pass_at_k(str(paths[k]), rows, "hops=1", 8, seed=seed) for k in ("sd-t", "sd-r")}
    students = [
        [k, f"{cell[k, 'hops=1']['accuracy']:.3f}", f"{h['pass_at_k']:.3f}", f"{h['sampled_accuracy']:.3f}"]
        for k, h in headroom.items()
    ]
    lines += ["", *markdown_table(["student", "greedy hops=1", "pass@8 hops=1", "sampled acc"], students)]
    write_text(out / "table.md", "\n".join(lines) + "\n")
    write_text(out / "table.json", json.dumps({"cells": results["cells"], "pass_at_8": headroom}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
