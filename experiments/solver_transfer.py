"""Does a decomposer refined against one solver hold up with the others? GRPO against each training solver in turn
(``hops=1``, ``memory=1``, ``noise=0.1``, ``neural``, and the multi-solver reward), each evaluated against all: the
full train x eval matrix, over seeds, from the same SFT student.

    python experiments/solver_transfer.py --out runs/solver_transfer [--seeds 0 1 2] [--rl_minutes 2.2]
    python experiments/solver_transfer.py --out runs/solver_transfer-quick --quick

Writes run folders per (training solver, seed) and one ``rlrefine report`` over them (the "holds up" table is the
matrix's summary: training-solver accuracy, mean over the unseen solvers, transfer ratio).
"""

from __future__ import annotations

import json

from _runs import parser, report, train

TRAIN_SOLVERS = ["hops=1", "memory=1", "noise=0.1", "neural"]
MULTI = [{"name": "multi_solver", "solvers": ["hops=1", "memory=1", "noise=0.1"]}, {"name": "format", "weight": 0.1}]


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--data", default="world")
    cli.add_argument("--rl_minutes", type=float, default=2.2)
    args = cli.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    data = "world:small" if args.quick else args.data
    budget = [] if args.quick else ["--rl_minutes", str(args.rl_minutes), "--max_steps", "100000"]
    solvers = ["--eval_solvers", *TRAIN_SOLVERS]
    runs = []
    for seed in seeds:
        base = ["--data", data, "--seed", str(seed), *budget, *solvers]
        first = train(args.out / f"hops1-{seed}", [*base, "--train_solver", "hops=1"], args)
        runs.append(first)
        start = ["--decomposer", str(first / "sft")]
        for solver in TRAIN_SOLVERS[1:]:
            name = solver.replace("=", "").replace(".", "")
            runs.append(train(args.out / f"{name}-{seed}", [*base, *start, "--train_solver", solver], args))
        multi = [*base, *start, "--rewards", json.dumps(MULTI)]
        runs.append(train(args.out / f"multi-{seed}", multi, args))
    report(runs, args.out / "report")


if __name__ == "__main__":
    main()
