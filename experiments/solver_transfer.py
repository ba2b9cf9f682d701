"""Does a decomposer refined against one solver hold up with the others? GRPO against each training solver in turn
(``hops=1``, ``memory=1``, ``noise=0.1``, ``neural``, and the multi-solver reward), each evaluated against all: the
full train x eval matrix, over seeds, from the same SFT student.

    python experiments/solver_transfer.py --out runs/solver_transfer [--seeds 0 1 2] [--start 'runs/x/grpo-{seed}/sft']
    python experiments/solver_transfer.py --out runs/solver_transfer-quick --quick

Every RL run starts from one SFT student per seed: the first run's own, or ``--start`` (a folder per seed, ``{seed}``
filled in), e.g. the students ``sft_vs_rl.py`` distilled. Each gets GRPO's 300 steps (``--max_steps``).

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
    cli.add_argument("--start", help="the SFT student every RL run of a seed starts from: a folder, {seed} filled in")
    cli.add_argument("--max_steps", type=int, default=300)
    args = cli.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    data = "world:small" if args.quick else args.data
    steps = [] if args.quick else ["--max_steps", str(args.max_steps)]
    solvers = ["--eval_solvers", *TRAIN_SOLVERS]
    runs = []
    for seed in seeds:
        base = ["--data", data, "--seed", str(seed), *steps, *solvers]
        if args.start:
            start = args.start.format(seed=seed)
        else:
            first = train(args.out / f"hops1-{seed}", [*base, "--train_solver", "hops=1"], args)
            runs.append(first)
            start = str(first / "sft")
        for solver in TRAIN_SOLVERS[1 if not args.start else 0 :]:
            name = solver.replace("=", "").replace(".", "")
            runs.append(
                train(args.out / f"{name}-{seed}", [*base, "--decomposer", start, "--train_solver", solver], args)
            )
        multi = [*base, "--decomposer", start, "--rewards", json.dumps(MULTI)]
        runs.append(train(args.out / f"multi-{seed}", multi, args))
    report(runs, args.out / "report")


if __name__ == "__main__":
    main()
