"""SFT and RL decomposers side by side: SD-T, SD-R, RFT, GRPO, RLOO and PPO, every one against every default solver,
over seeds, at equal RL wall clock, on the default world and on the benchmark world (``world:bench``).

    python experiments/sft_vs_rl.py --out runs/sft_vs_rl [--worlds default bench] [--seeds 0 1 2] [--rl_minutes 2.2]
    python experiments/sft_vs_rl.py --out runs/sft_vs_rl-quick --quick          # minutes: what CI runs

Per world and seed: the SD-T student is distilled once and every RL algorithm starts from it with the same budget
(``--rl_minutes``, steps unbounded); SD-R is distilled by its own pipeline run (its SFT row is the SD-R student).
Then one ``rlrefine report`` per world over all its runs: report-<world>/report.md and pictures.
"""

from __future__ import annotations

from _runs import parser, report, train

ALGORITHMS = ("grpo", "rloo", "ppo", "rft")


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--worlds", nargs="+", default=["default", "bench"])
    cli.add_argument("--rl_minutes", type=float, default=2.2, help="every algorithm's RL budget")
    args = cli.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    for world in args.worlds:
        data = "world:small" if args.quick else f"world:{world}"
        budget = [] if args.quick else ["--rl_minutes", str(args.rl_minutes), "--max_steps", "100000"]
        runs = []
        for seed in seeds:
            base = ["--data", data, "--seed", str(seed)]
            first = train(args.out / world / f"grpo-{seed}", [*base, "--algorithm", "grpo", *budget], args)
            runs.append(first)
            for algorithm in ALGORITHMS[1:]:
                argv = [*base, "--algorithm", algorithm, "--decomposer", str(first / "sft"), *budget]
                runs.append(train(args.out / world / f"{algorithm}-{seed}", argv, args))
            sdr = [*base, "--algorithm", "grpo", "--sft_variant", "sd-r", *budget]
            runs.append(train(args.out / world / f"sdr-grpo-{seed}", sdr, args))
        report(runs, args.out / f"report-{world}")


if __name__ == "__main__":
    main()
