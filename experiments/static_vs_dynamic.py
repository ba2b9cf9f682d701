"""Static vs. dynamic decomposition (the paper's Table 6): accuracy and tokens per problem of every decomposer in both
modes, against every default solver.

    python experiments/static_vs_dynamic.py --out runs/static_vs_dynamic [--decomposers sft=runs/x/sft rl=runs/x/rl]
    python experiments/static_vs_dynamic.py --out runs/static_vs_dynamic-quick --quick     # seconds: what CI runs

Static: the decomposer writes all sub-questions at once, then the solver answers them (the paper's pipeline).
Dynamic: it writes one sub-question, sees the solver's answer, writes the next, until it writes none or reaches the
cap (three); the final answer is the solver's on the final list (``rlrefine.evaluation.dynamic``). Evaluated: the flawed teacher
(one per seed: ``--seeds`` draws its flaws), the oracle, and any decomposer you pass (a trained folder as
``LABEL=FOLDER``, ``hf:MODEL``, ...), with ``rlrefine eval --modes static dynamic`` (cells cached in OUT/eval: a killed
run resumes). Writes OUT/report.md: static beside dynamic per (decomposer, solver), tokens per problem summed over
every round's decomposer and solver calls.

The teacher and the oracle ignore the answers they are shown (their k-th sub-question is fixed), so dynamic mode only
adds rounds and tokens to them. The tiny world students were trained on static text only: a dynamic conversation (the
earlier sub-questions as assistant turns, the solver's answers as user turns) is out of their distribution, and their
dynamic rows measure that, not what a student trained for dynamic decomposition would do. ``--config`` takes an
``rlrefine eval`` config file (its data, split, limit, solvers, decomposers and prices); flags override it.
"""

from __future__ import annotations

import json
import shlex
import sys
from datetime import date
from pathlib import Path

from _runs import parser

from rlrefine.core.atomic import write_text
from rlrefine.core.settings import parse_config
from rlrefine.core.tables import markdown_table
from rlrefine.data import load_split
from rlrefine.evaluation.evaluate import EvalArgs, evaluate, load_prices
from rlrefine.solvers import DEFAULT_SOLVERS

QUICK = {"data": "world:small", "limit": 20, "solvers": ["hops=1", "hops=2"]}


def settings(args) -> EvalArgs:
    """The evaluation's settings: the --config file's, then the script's defaults and flags over them."""
    chosen = parse_config(EvalArgs, ["--config", args.config], "static_vs_dynamic")[0] if args.config else None
    base = chosen or EvalArgs(limit=1000, solvers=list(DEFAULT_SOLVERS))
    flags = {"data": args.data, "limit": args.limit, "solvers": args.solvers}
    for key, value in {**flags, **(QUICK if args.quick else {})}.items():
        if value is not None:
            setattr(base, key, value)
    teachers = ["teacher" if seed == 0 else f"teacher:seed={seed}" for seed in args.seeds]
    extra = [d for d in (chosen.decomposers if chosen else []) if d not in ("none", "oracle", "teacher")]
    base.decomposers = list(dict.fromkeys([*teachers, "oracle", *extra, *args.decomposers]))
    return base


def per_problem(cell: dict, who: str) -> float:
    t = cell["tokens"]
    return (t[f"{who}_in"] + t[f"{who}_out"]) / max(cell["n"], 1)


def table(results: dict) -> list[str]:
    """Static beside dynamic, one line per (decomposer, solver): the paper's Table 6 with our cost columns."""
    cells = {(c["decomposer"], c["solver"]): c for c in results["cells"]}
    rows = []
    for (name, solver), s in cells.items():
        d = cells.get((f"{name} (dynamic)", solver))
        if s.get("mode") == "dynamic" or d is None:
            continue
        total = per_problem(s, "decomposer") + per_problem(s, "solver")
        ratio = (per_problem(d, "decomposer") + per_problem(d, "solver")) / total if total else float("nan")
        rows.append(
            [name, solver, f"{s['accuracy']:.3f} / {d['accuracy']:.3f}"]
            + [f"{s['mean_subquestions']:.2f} / {d['mean_subquestions']:.2f}"]
            + [f"{per_problem(s, 'decomposer'):.1f} / {per_problem(d, 'decomposer'):.1f}"]
            + [f"{per_problem(s, 'solver'):.1f} / {per_problem(d, 'solver'):.1f}", f"{ratio:.2f}x"]
            + [f"{s['cost_usd_per_1k']:.4f} / {d['cost_usd_per_1k']:.4f}"]
        )
    header = ["decomposer", "solver", "accuracy static / dynamic", "sub-q static / dynamic"]
    header += ["decomposer tokens per problem static / dynamic", "solver tokens per problem static / dynamic"]
    header += ["all tokens dynamic / static", "$ / 1k static / dynamic"]
    return markdown_table(header, rows)


def main() -> None:
    cli = parser(__doc__.split("\n\n")[0])
    cli.set_defaults(seeds=[0])
    cli.add_argument("--decomposers", nargs="*", default=[], help="more decomposers: LABEL=FOLDER, hf:MODEL, ...")
    cli.add_argument("--data", help="dataset (default: the world)")
    cli.add_argument("--limit", type=int, help="test problems evaluated (default: 1000)")
    cli.add_argument("--solvers", nargs="+", help="default: every default solver")
    args = cli.parse_args()
    chosen = settings(args)
    rows = list(load_split(chosen.data, chosen.split, chosen.limit, chosen.domain))
    results = evaluate(
        rows,
        chosen.decomposers,
        chosen.solvers,
        Path(args.out) / "eval",
        load_prices(chosen.prices),
        chosen.batch_size,
        progress=False,
        modes=["static", "dynamic"],
    )
    lines = [
        f"# Static vs. dynamic decomposition ({len(rows)} problems of {chosen.data}:{chosen.split})",
        "",
        f"Made by `{shlex.join(['python', *sys.argv])}` on {date.today().isoformat()}.",
        "",
        *table(results),
        "",
        "Tokens per problem are input + output, summed over every call (dynamic: every round). Model decomposers that",
        "were trained on static text see dynamic prompts out of their distribution.",
        *(f"Note: {note}" for note in results.get("notes", [])),
    ]
    write_text(Path(args.out) / "report.md", "\n".join(lines) + "\n")
    write_text(Path(args.out) / "report.json", json.dumps({"cells": results["cells"]}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
