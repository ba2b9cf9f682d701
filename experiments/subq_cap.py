"""The cap on sub-questions (the paper's Table 10): none, 4, 3 and 2, for the teacher, its SD-T student and GRPO.

    python experiments/subq_cap.py --out runs/subq_cap [--caps none 4 3 2] [--seeds 0 1 2] [--data world:deep]
    python experiments/subq_cap.py --out runs/subq_cap-quick --quick

Per cap, one pipeline run: the teacher writes at most that many sub-questions (``teacher:cap=N``), the student is
distilled from those decompositions, and GRPO refines it with the format reward's validity at the same cap (a longer
decomposition is not cut: the solver still gets it, the format reward scores it 0). The teacher, SFT and RL rows of
each run are the table's three rows per cap; the report groups them by ``teacher``.

The default world is ``world:deep`` (5-6 hops: a ``hops=1`` solver needs 4-5 sub-questions), so that every cap binds:
on the default world (2-4 hops) the chains need at most three and caps of 3, 4 and none give the same decompositions.
The cap here is the world teacher's knob; a real teacher LLM's prompt (``--config``) keeps the paper's "at most 3".

RL samples up to 96 tokens here, not the default 48: five sub-questions of the deep world take ~60, and a completion
cut at the length cap earns no reward, so at 48 the length cap, not the sub-question cap, would decide (measured: 10-43 %
of the uncapped student's samples were cut, and GRPO unlearned depth 6).
"""

from __future__ import annotations

import json

from _runs import parser, report, train


def main() -> None:
    cli = parser(__doc__.splitlines()[0])
    cli.add_argument("--data", default="world:deep")
    cli.add_argument("--caps", nargs="+", default=["none", "4", "3", "2"], help="sub-question caps; none: no cap")
    args = cli.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    data = "world:small" if args.quick else args.data
    runs = []
    for cap in args.caps:
        value = None if cap.lower() == "none" else int(cap)
        rewards = [{"name": "solver", "subquestion_cost": 0.05}, {"name": "format", "weight": 0.1, "cap": value}]
        for seed in seeds:
            argv = ["--data", data, "--seed", str(seed), "--teacher", f"teacher:cap={json.dumps(value)}"]
            argv += [] if args.quick else ["--max_completion_length", "96"]  # room for five sub-questions (below)
            runs.append(train(args.out / f"cap{cap.lower()}-{seed}", [*argv, "--rewards", json.dumps(rewards)], args))
    report(runs, args.out / "report")


if __name__ == "__main__":
    main()
