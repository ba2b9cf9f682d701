"""Static GRPO, RLOO, PPO and RFT against GRPO in the dialogue (``--rollout dynamic``), on ``world:bench`` with the
cap lifted, at equal RL wall clock, over seeds: which algorithm wins once the cap is gone, and does a decomposer that
hears the solver's answers hold up better on solvers it never saw?

    python experiments/dialogue_vs_static.py --out runs/dialogue_vs_static [--seeds 0 1 2] [--rl_minutes 3]
    python experiments/dialogue_vs_static.py --out runs/dialogue_vs_static-quick --quick      # minutes

No limit stands in for the run's: the teacher writes as many sub-questions as it likes (``teacher:cap=null``), the
format reward has ``cap: null``, RFT keeps what the rewards allow, a dialogue runs up to ``ROUND_LIMIT`` rounds, and
every algorithm samples the same number of tokens a turn or a decomposition (``--max_completion_length``). Per seed:
one SD-T student distilled from the teacher's decompositions, which GRPO, RLOO, PPO and RFT refine, and one distilled
from the same decompositions asked one per round of the training solver (dialogue SFT data), which GRPO refines in the
dialogue. Every run trains against ``hops=1`` for the same RL minutes, and is evaluated on the test split against every
default solver and a held-apart one no run trained against (``--held_apart``); the dialogue student in both modes.
Then one ``rlrefine report`` over all runs.
"""

from __future__ import annotations

from _runs import parser, report, train

STATIC = ("grpo", "rloo", "ppo", "rft")
UNCAPPED = [  # the teacher and the rewards set no cap; 64 tokens a decomposition or a turn, for every algorithm
    "--data", "world:bench", "--teacher", "teacher:cap=null", "--max_completion_length", "64",
    "--rewards", "[{name: solver, subquestion_cost: 0.05}, {name: format, weight: 0.1, cap: null}]",
]  # fmt: skip


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--rl_minutes", type=float, default=3.0, help="every algorithm's RL wall clock (a quiet machine)")
    cli.add_argument("--held_apart", default="hops=2,noise=0.1", help="an evaluation solver no run trains against")
    cli.add_argument("--eval_limit", type=int, default=500)
    args = cli.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    solvers = ["hops=1", "hops=2", "noise=0.1", "memory=1", "neural", args.held_apart]
    common = [*UNCAPPED, "--eval_solvers", *solvers]
    if not args.quick:
        common += ["--eval_limit", str(args.eval_limit), "--pass_k", "0", "--rl_minutes", str(args.rl_minutes)]

    def budget(algorithm: str) -> list[str]:  # no step or round limit before the minutes are spent
        until = [] if args.quick else ["--rft_rounds" if algorithm == "rft" else "--max_steps", "100000"]
        return ["--algorithm", algorithm, *until]

    runs = []
    for seed in seeds:
        base = [*common, "--seed", str(seed)]
        first = train(args.out / f"grpo-{seed}", [*base, *budget("grpo")], args)
        runs.append(first)
        for algorithm in STATIC[1:]:
            argv = [*base, *budget(algorithm), "--decomposer", str(first / "sft")]
            runs.append(train(args.out / f"{algorithm}-{seed}", argv, args))
        runs.append(train(args.out / f"dialogue-grpo-{seed}", [*base, *budget("grpo"), "--rollout", "dynamic"], args))
    report(runs, args.out / "report")


if __name__ == "__main__":
    main()
