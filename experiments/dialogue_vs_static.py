"""Static GRPO, RLOO, PPO and RFT against GRPO and RLOO in the dialogue (``--rollout dynamic``), on ``world:bench``
with the cap lifted, at equal RL wall clock, over seeds: which algorithm wins once the cap is gone, and does a
decomposer that hears the solver's answers hold up better on solvers it never saw, or listen when trained against a mix?

    python experiments/dialogue_vs_static.py --out runs/dialogue_vs_static [--seeds 0 1 2] [--rl_minutes 3]
    python experiments/dialogue_vs_static.py --out runs/dialogue_vs_static-quick --quick      # minutes

No limit stands in for the run's: the teacher writes as many sub-questions as it likes (``teacher:cap=null``), the
format reward has ``cap: null``, RFT keeps what the rewards allow, a dialogue runs up to ``ROUND_LIMIT`` rounds, and
every algorithm samples the same number of tokens a turn or a decomposition (``--max_completion_length``). Per seed:
one SD-T student distilled from the teacher's decompositions, which GRPO, RLOO, PPO and RFT refine, and one distilled
from the same decompositions asked one per round of the training solver (dialogue SFT data), which GRPO and RLOO refine
in the dialogue against ``hops=1``, and GRPO against a mix of ``hops=1`` and ``hops=2`` (``MIX``: a reason to listen).
Every run trains for the same RL minutes, and is evaluated on the test split against every default solver and a
held-apart one no run trained against (``--held_apart``); a dialogue student in both modes. Then one ``rlrefine report``
over all runs, and ``summary.md``: per decomposer, over seeds, mean (worst–best) of the accuracy with ``hops=1``, on
the depth-5 problems, over the default solvers it never trained against and with the held-apart one, its sub-questions
with ``hops=1`` and with ``hops=2`` (does it listen?), tokens and dollars per problem, and RL steps.
"""

from __future__ import annotations

import json
import shlex
import sys
from datetime import date
from pathlib import Path
from statistics import mean

from _runs import parser, report, train

STATIC = ("grpo", "rloo", "ppo", "rft")
UNCAPPED = [  # the teacher and the rewards set no cap; 64 tokens a decomposition or a turn, for every algorithm
    "--data", "world:bench", "--teacher", "teacher:cap=null", "--max_completion_length", "64",
    "--rewards", "[{name: solver, subquestion_cost: 0.05}, {name: format, weight: 0.1, cap: null}]",
]  # fmt: skip
MIX = "{name: mix, solvers: [hops=1, hops=2]}"  # a reason to listen: half the problems go to the stronger solver


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
        dialogue = train(args.out / f"dialogue-grpo-{seed}", [*base, *budget("grpo"), "--rollout", "dynamic"], args)
        runs.append(dialogue)
        talks = [*base, "--rollout", "dynamic", "--decomposer", str(dialogue / "sft")]  # the same dialogue student
        runs.append(train(args.out / f"dialogue-rloo-{seed}", [*talks, *budget("rloo")], args))
        runs.append(train(args.out / f"dialogue-mix-{seed}", [*talks, *budget("grpo"), "--train_solver", MIX], args))
    report(runs, args.out / "report")
    (args.out / "summary.md").write_text(summary(runs, solvers))
    print((args.out / "summary.md").read_text())


def summary(runs: list[Path], solvers: list[str]) -> str:
    """The comparison's table (see the module's docstring): each run's SFT and RL rows, in the mode it was trained
    in, with ``hops=1`` as the first training solver, ``hops=2`` (the mix's other one) on its own, as unseen the
    default solvers no run trained against, and the last of ``solvers`` held apart."""
    import yaml

    from rlrefine.core.tables import markdown_table
    from rlrefine.solvers import make_solver

    names = [make_solver(s).name for s in solvers]
    trained, stronger, held = names[0], names[1], names[-1]  # does a dialogue ask fewer sub-questions of hops=2?
    against = {}  # the solvers each run trained against (a mix: each of its own)
    for run in runs:
        solver = make_solver(yaml.safe_load((run / "config.yaml").read_text())["train_solver"])
        against[run] = [s.name for s in getattr(solver, "solvers", [solver])]
    unseen = [s for s in names[:-1] if not any(s in a for a in against.values())]
    found: dict[str, list[dict]] = {}
    for run in runs:
        results = json.loads((run / "results.json").read_text())
        training = json.loads((run / "rl" / "eval.json").read_text())["training"]
        algorithm, dialogue, mix = training["algorithm"], training.get("rollout") == "dynamic", len(against[run]) > 1
        cells = {(c["decomposer"], c["solver"]): c for c in results["cells"]}
        suffix = " (dynamic)" if dialogue else ""
        starts = [("SFT in the dialogue" if dialogue else "SFT", f"sft{suffix}")] if algorithm == "grpo" else []
        label = f"{algorithm.upper()} in the dialogue" if dialogue else algorithm.upper()
        label += ", solver mix" if mix else ""
        for name, decomposer in [*starts[: not mix], (label, f"rl-{algorithm}{suffix}")]:
            cell = cells[decomposer, trained]
            found.setdefault(name, []).append(
                {
                    "trained": cell["accuracy"],
                    "depth 5": cell["by_depth"].get("5"),
                    "stronger": cells[decomposer, stronger]["accuracy"],
                    "unseen": mean(cells[decomposer, s]["accuracy"] for s in unseen),
                    "held apart": cells[decomposer, held]["accuracy"],
                    "sub-q": cell["mean_subquestions"],
                    "sub-q stronger": cells[decomposer, stronger]["mean_subquestions"],
                    "tokens": sum(cell["tokens"].values()) / cell["n"],
                    "$ / 1k": cell["cost_usd_per_1k"],
                    "RL steps": None
                    if name.startswith("SFT")
                    else training.get("steps", len(training.get("rounds", []))),
                }
            )

    def spread(values, digits: int) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "–"
        text = f"{mean(values):.{digits}f}"
        return text if len(values) == 1 else f"{text} ({min(values):.{digits}f}–{max(values):.{digits}f})"

    columns = ["trained", "depth 5", "stronger", "unseen", "held apart", "sub-q", "sub-q stronger", "tokens", "$ / 1k"]
    digits = {"sub-q": 2, "sub-q stronger": 2, "tokens": 0, "$ / 1k": 4, "RL steps": 0}
    rows = [
        [name, len(seeds), *(spread([r[c] for r in seeds], digits.get(c, 3)) for c in [*columns, "RL steps"])]
        for name, seeds in found.items()
    ]
    header = ["decomposer", "seeds", f"{trained} (trained)", f"depth 5, {trained}", stronger, "unseen (mean)"]
    header += [f"{held} (held apart)", f"sub-q, {trained}", f"sub-q, {stronger}", "tokens / problem", "$ / 1k"]
    header += ["RL steps (RFT: rounds)"]
    made = shlex.join(["python", *sys.argv])
    lines = ["# Static vs. dialogue decomposers on the uncapped bench", "", f"Made by `{made}` on {date.today()}.", ""]
    lines += [
        f"Unseen: {', '.join(unseen)}, which no run trained against ({stronger}: the mix trained against it). Tokens "
        f"and dollars with {trained}; mean (worst–best) over seeds.",
        "",
    ]
    return "\n".join([*lines, *markdown_table(header, rows)]) + "\n"


if __name__ == "__main__":
    main()
