"""SFT and RL decomposers side by side: SD-T, SD-R, RFT, GRPO, RLOO and PPO, every one against every default solver,
over seeds, at equal RL wall clock, on the default world and on the benchmark world (``world:bench``).

    python experiments/sft_vs_rl.py --out runs/sft_vs_rl [--worlds default bench] [--seeds 0 1 2]
    python experiments/sft_vs_rl.py --out runs/sft_vs_rl-quick --quick          # minutes: what CI runs

Per world and seed: the SD-T student is distilled once and every RL algorithm starts from it with the same RL
wall clock; SD-R is distilled by its own pipeline run (its SFT row is the SD-R student, refined by GRPO). Then one
``rlrefine report`` per world over all its runs: report-<world>/report.md and pictures.

Equal wall clock, two ways. ``--rl_minutes M``: every algorithm stops after M minutes (right when the machine runs
nothing else). By default, steps that take equally long (robust to a busy machine): GRPO's 300 steps, and for RLOO
and PPO the steps their measured per-step times allow in that time (``experiments/bench_rl_step.py``: per-step
seconds of GRPO, RLOO and PPO measured in one run; ``--steps`` takes your own), RFT the rounds that fit.
"""

from __future__ import annotations

from _runs import parser, report, train

ALGORITHMS = ("grpo", "rloo", "ppo", "rft")
# Equal-time steps: GRPO's default 300, the others scaled by per-step times measured in one run
# (experiments/bench_rl_step.py on the default SD-T student); RFT: rounds of 250 problems x 8 samples.
STEPS = ["grpo=300", "rloo=233", "ppo=199", "rft=2"]  # measured: GRPO 0.85 s, RLOO 1.10 s, PPO 1.28 s per step


def budget(args, algorithm: str, steps: dict[str, str]) -> list[str]:
    """The flags that give ``algorithm`` its share of the equal RL wall clock."""
    flags = ["--algorithm", algorithm]
    if args.quick:
        return flags
    if args.rl_minutes is not None:
        return [*flags, "--rl_minutes", str(args.rl_minutes)] + (
            [] if algorithm == "rft" else ["--max_steps", "100000"]
        )
    return [*flags, "--rft_rounds" if algorithm == "rft" else "--max_steps", steps[algorithm]]


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--worlds", nargs="+", default=["default", "bench"])
    cli.add_argument("--rl_minutes", type=float, help="every algorithm's RL budget in minutes (a quiet machine)")
    cli.add_argument(
        "--steps", nargs="+", default=STEPS, help="equal-time RL steps per algorithm (rft: rounds), as name=number"
    )
    args = cli.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    for world in args.worlds:
        data = "world:small" if args.quick else ("world" if world == "default" else f"world:{world}")
        steps = dict(item.split("=") for item in args.steps)
        runs = []
        for seed in seeds:
            base = ["--data", data, "--seed", str(seed)]
            first = train(args.out / world / f"grpo-{seed}", [*base, *budget(args, "grpo", steps)], args)
            runs.append(first)
            for algorithm in ALGORITHMS[1:]:
                argv = [*base, "--decomposer", str(first / "sft"), *budget(args, algorithm, steps)]
                runs.append(train(args.out / world / f"{algorithm}-{seed}", argv, args))
            sdr = [*base, "--sft_variant", "sd-r", *budget(args, "grpo", steps)]
            runs.append(train(args.out / world / f"sdr-grpo-{seed}", sdr, args))
        report(runs, args.out / f"report-{world}")


if __name__ == "__main__":
    main()
