"""``rlrefine eval``: every (decomposer x solver) cell on a dataset split -> ``results.json`` + ``results.md``.

Per cell: accuracy, n, solver failures, mean sub-questions, format validity, accuracy per domain and depth,
decomposer and solver tokens, and cost under a price table (the paper's cost columns). Decompositions are
computed once per decomposer and cached as JSONL, cells as JSON: a killed evaluation resumes where it
stopped. Token counts are the model's tokens for model decomposers/solvers and whitespace words for the
symbolic ones (a stand-in for what an LLM would read and write).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rlrefine.core.atomic import write_json, write_text
from rlrefine.core.format import MAX_SUBQUESTIONS, parse
from rlrefine.core.protocols import UsageError
from rlrefine.core.registry import check
from rlrefine.core.tables import markdown_table
from rlrefine.data import require
from rlrefine.decomposers import Decomposer, make_decomposer
from rlrefine.evaluation.dynamic import (
    check_modes,
    require_dynamic,
    rounds_for,
    solve_dynamic,
    supports_dynamic,
    version,
)
from rlrefine.evaluation.pipeline import decompose
from rlrefine.solvers import DEFAULT_SOLVERS, Solver, make_solver
from rlrefine.solvers.base import records, solve_and_grade

SCHEMA = 2  # results.json layout: 2 added per-cell first_error and this field (rlrefine report refuses others)

# USD per 1M tokens (input, output). Teacher and solver at GPT-3.5-turbo list price, as in the paper's cost
# columns; a distilled student at the price of serving a small model. Override with --prices FILE.yaml.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "teacher": (0.5, 1.5),
    "solver": (0.5, 1.5),
    "student": (0.05, 0.1),
    "oracle": (0.0, 0.0),
    "none": (0.0, 0.0),
}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_")[-80:] or "x"


def cache_name(model: Decomposer | Solver) -> str:
    """File stem of a decomposer's or solver's cache: its name plus what identifies the exact model behind it
    (two solvers can share a name: a retrained folder, two endpoints labelled alike)."""
    kind = type(getattr(model, "inner", model)).__name__  # a memoised solver is its inner one
    identity = f"{kind}|{model.name}|{getattr(model, 'version', '')}"
    return f"{_safe(model.name)}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def rows_key(rows: Sequence[Mapping]) -> str:
    """Identity of the evaluated rows, gold included, so a cache from other data is never reused
    (gsm8k and gsm8k:socratic share ids and questions but not gold decompositions)."""
    digest = hashlib.sha256()
    for row in rows:
        gold = [row.get(c) for c in ("answer", "metric", "subquestions")]
        digest.update(f"{row['id']}\x00{row['question']}\x00{row['context']}\x00{json.dumps(gold)}\n".encode())
    return digest.hexdigest()[:16]


def cost(prices: Mapping[str, Sequence[float]], key: str, prompt_tokens: int, completion_tokens: int) -> float:
    price_in, price_out = prices.get(key, (0.0, 0.0))
    return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6


def summarize(rows: Sequence[Mapping], decomposed, parsed, records, decomposer, solver) -> dict:
    scored = [r["score"] for r in records if r["score"] is not None]
    by: dict[str, dict] = {"domain": defaultdict(list), "depth": defaultdict(list)}
    for row, rec in zip(rows, records):
        for key in by:  # a failed problem is wrong here too, as in the accuracy: the breakdowns add up to it
            if row.get(key) not in (None, "", 0):
                by[key][str(row[key])].append(rec["score"] or 0.0)
    n = len(rows)
    dec_in = sum(d.prompt_tokens for d in decomposed)
    dec_out = sum(d.completion_tokens for d in decomposed)
    sol_in = sum(r["solver_prompt_tokens"] for r in records)
    sol_out = sum(r["solver_completion_tokens"] for r in records)
    return {
        "decomposer": decomposer.name,
        "solver": solver.name,
        "n": n,
        "accuracy": sum(scored) / n if n else 0.0,
        "errors": n - len(scored),
        "first_error": next((r["error"] for r in records if r["error"]), None),
        "mean_subquestions": sum(p.count for p in parsed) / max(n, 1),
        "valid_format": sum(p.valid for p in parsed) / max(n, 1),
        "oracle_match": sum(p.subquestions == tuple(r["subquestions"]) for p, r in zip(parsed, rows)) / n
        if n and any(r.get("subquestions") for r in rows)
        else None,
        "by_domain": {k: sum(v) / len(v) for k, v in sorted(by["domain"].items())},
        "by_depth": {k: sum(v) / len(v) for k, v in sorted(by["depth"].items())},
        "tokens": {"decomposer_in": dec_in, "decomposer_out": dec_out, "solver_in": sol_in, "solver_out": sol_out},
    }


def dynamic_label(name: str) -> str:
    """A dynamic cell's decomposer name: its own row in every table, beside the same decomposer's static one."""
    return f"{name} (dynamic)"


def dynamic_cell(
    rows: Sequence[Mapping], dec: Decomposer, solver: Solver, cell_path: Path | None, cap: int | None = MAX_SUBQUESTIONS
) -> dict:
    """A cell evaluated in dynamic mode (``rlrefine.evaluation.dynamic``), cached as static cells are. Its decompositions depend
    on the solver's answers, so there is no per-decomposer cache: a killed evaluation redoes the cell."""
    if cell_path and cell_path.exists():
        return json.loads(cell_path.read_text())
    decomposed, results = solve_dynamic(dec, solver, rows, rounds_for(cap))
    parsed = [parse(d.text, cap) for d in decomposed]
    cell = summarize(rows, decomposed, parsed, records(rows, results), dec, solver)
    cell.update(decomposer=dynamic_label(dec.name), mode="dynamic")
    if cell_path and not cell["errors"]:
        write_json(cell_path, cell)
    return cell


def priced(cell: dict, decomposer: Decomposer, solver: Solver, prices: Mapping[str, Sequence[float]]) -> dict:
    """The cell with its cost under ``prices``: computed from the token counts at report time, so a cached cell
    is re-priced when the price table changes."""
    t = cell["tokens"]
    dollars = cost(prices, decomposer.price_key, t["decomposer_in"], t["decomposer_out"])
    dollars += cost(prices, solver.price_key, t["solver_in"], t["solver_out"])
    return {**cell, "cost_usd": dollars, "cost_usd_per_1k": 1000 * dollars / max(cell["n"], 1)}


def evaluate(
    rows: Sequence[Mapping],
    decomposers: Sequence[str | Decomposer],
    solvers: Sequence[str | Solver],
    out: str | Path | None = None,
    prices: Mapping[str, Sequence[float]] | None = None,
    batch_size: int = 64,
    progress: bool = True,
    skip_unfit: bool = False,
    cache: str | Path | None = None,
    modes: Sequence[str] = ("static",),
    cap: int | None = MAX_SUBQUESTIONS,
) -> dict:
    """Evaluate every cell; with ``out``, cache and resume, and write results.json and results.md there. The cache
    (``out/cache`` unless ``cache`` names a folder that several evaluations share) is keyed by the rows, the exact
    decomposer and the exact solver, so a shared one only ever hands back the same cell.

    ``modes``: ``static`` (the paper's pipeline), ``dynamic`` (one sub-question per round after the solver's answers;
    its cells are rows named "NAME (dynamic)", cached under a key of their own) or both. ``cap`` is the run's cap on
    sub-questions: what ``valid_format`` allows, and how many rounds a dialogue runs (``None``: no cap,
    ``dynamic.ROUND_LIMIT`` rounds); a cell is cached under it.

    A decomposer that refuses these problems (the oracle where they have no gold sub-questions), or has no dynamic
    mode when one is asked for, fails the call before any work, or with ``skip_unfit`` (a default matrix) is left out
    (of that mode) with a note in the results."""
    prices = {**DEFAULT_PRICES, **(prices or {})}
    modes = check_modes(modes)
    rows = list(rows)
    notes = []
    for kind, specs in (("decomposer", decomposers), ("solver", solvers)):  # before any model loads
        for spec in list(specs):
            needs = check(kind, spec) if isinstance(spec, (str, Mapping)) else getattr(spec, "requires", ())
            what = spec if isinstance(spec, (str, Mapping)) else spec.name
            try:
                require(f"{kind} {what!r}", needs, rows, "the evaluated data")
            except UsageError as exc:
                if not (skip_unfit and kind == "decomposer"):
                    raise
                decomposers = [d for d in decomposers if d is not spec]
                notes.append(f"{what} left out: {exc}")
    decomposers = [make_decomposer(d) for d in decomposers]  # resolve all names before any work
    solvers = [make_solver(s) for s in solvers]
    dynamic = [d for d in decomposers if "dynamic" in modes and supports_dynamic(d)]
    for dec in [d for d in decomposers if "dynamic" in modes and d not in dynamic]:
        if not skip_unfit:
            require_dynamic(dec)  # raises, naming the decomposers that have a dynamic mode
        notes.append(f"{dec.name} left out of dynamic mode: it has no next_subquestion")
    for solver in solvers:  # what only the built solver knows (a model solver that calculates over world stories)
        require(f"solver {solver.name!r}", getattr(solver, "requires", ()), rows, "the evaluated data")
    key = rows_key(rows)
    capped = "" if cap == MAX_SUBQUESTIONS else f"__cap-{cap}"  # the paper's cap keeps the cache names it always had
    out = Path(out) if out else None
    shelf = Path(cache) if cache else out / "cache" if out else None
    cells, timings = [], {}
    for dec in decomposers:
        if "static" in modes:
            cache = shelf / key / f"{cache_name(dec)}.jsonl" if shelf else None
            start = time.perf_counter()
            decomposed = decompose(dec, rows, batch_size, cache=cache, progress=progress)
            timings[dec.name] = time.perf_counter() - start
            parsed = [parse(d.text, cap) for d in decomposed]
            for solver in solvers:
                cell_path = shelf / key / f"{cache_name(dec)}__{cache_name(solver)}{capped}.json" if shelf else None
                if cell_path and cell_path.exists():
                    cell = json.loads(cell_path.read_text())
                else:
                    graded = solve_and_grade(
                        rows, [p.subquestions for p in parsed], solver, [d.error for d in decomposed]
                    )
                    cell = summarize(rows, decomposed, parsed, graded, dec, solver)
                    if cell_path and not cell["errors"]:  # a decomposer or solver failure: the cell is redone next time
                        write_json(cell_path, cell)
                cells.append(priced(cell, dec, solver, prices))
        if dec in dynamic:
            start = time.perf_counter()
            for solver in solvers:
                name = f"{cache_name(dec)}__{cache_name(solver)}{capped}__dynamic-{version(rounds_for(cap))}.json"
                cell = dynamic_cell(rows, dec, solver, shelf / key / name if shelf else None, cap)
                cells.append(priced(cell, dec, solver, prices))
            timings[dynamic_label(dec.name)] = time.perf_counter() - start  # decompose and solve, interleaved
    results = {
        "schema": SCHEMA,
        "n": len(rows),
        "rows_key": key,
        "prices_usd_per_1M": prices,
        "decompose_seconds": timings,
        "cells": cells,
        **({"notes": notes} if notes else {}),
    }
    if out:
        write_json(out / "results.json", results)
        write_text(out / "results.md", results_markdown(results))
    return results


def sample_and_solve(model, rows: Sequence[Mapping], solver: str, k: int, seed: int, temperature: float = 1.0):
    """k sampled decompositions per problem (in row order), each solved and graded: one batched generation and
    one batched solver call. Returns (row, generation, parsed, graded record) per sample."""
    from rlrefine.solvers import shared_solver

    samples = model.sample(rows, n=k, temperature=temperature, seed=seed)
    flat_rows = [row for row in rows for _ in range(k)]
    gens = [g for gs in samples for g in gs]
    parsed = [parse(g.text) for g in gens]
    graded = solve_and_grade(flat_rows, [p.subquestions for p in parsed], shared_solver(solver))
    return list(zip(flat_rows, gens, parsed, graded))


def pass_at_k(
    decomposer: str | Decomposer,
    rows: Sequence[Mapping],
    solver: str,
    k: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
) -> dict:
    """Headroom for RL: share of problems where any of k sampled decompositions is solver-correct.

    RL can only reinforce what the policy sometimes samples; pass@k bounds what it can reach quickly.
    """
    model = make_decomposer(decomposer)
    if not callable(getattr(model, "sample", None)):
        raise UsageError(f"pass@k needs a model decomposer that samples, got {model.name!r}")
    solved = sample_and_solve(model, rows, solver, k, seed, temperature)
    scores = [s[3]["score"] for s in solved]
    per_problem = [scores[i * k : (i + 1) * k] for i in range(len(rows))]
    scored = [s for s in scores if s is not None]  # a failed solve has no score: counted apart, not as wrong
    return {
        "k": k,
        "solver": solver,
        "pass_at_k": sum(1.0 in s for s in per_problem) / max(len(rows), 1),
        "sampled_accuracy": sum(scored) / max(len(scored), 1),
        "mean_subquestions": sum(s[2].count for s in solved) / max(len(solved), 1),
        "errors": len(scores) - len(scored),
    }


def results_markdown(results: Mapping) -> str:
    """Markdown: an accuracy matrix (decomposer rows x solver columns), then per-cell detail."""
    cells = results["cells"]
    decs = list(dict.fromkeys(c["decomposer"] for c in cells))
    sols = list(dict.fromkeys(c["solver"] for c in cells))
    acc = {(c["decomposer"], c["solver"]): c for c in cells}
    lines = [f"# Evaluation ({results['n']} problems)", ""]
    lines += [*(f"Note: {note}" for note in results.get("notes", [])), *([""] if results.get("notes") else [])]
    lines += ["Accuracy", ""]
    matrix = []
    for d in decs:
        row = [acc[d, s]["accuracy"] for s in sols if (d, s) in acc]
        matrix.append([d, *(f"{a:.3f}" for a in row), f"{sum(row) / max(len(row), 1):.3f}"])
    lines += markdown_table(["decomposer", *sols, "mean"], matrix)
    if results.get("pass_at_k"):
        lines += ["", "Headroom: pass@k of sampled decompositions", ""]
        headroom = [
            [name, p["solver"], p["k"], f"{p['pass_at_k']:.3f}", f"{p['sampled_accuracy']:.3f}"]
            + [f"{p['mean_subquestions']:.2f}"]
            for name, p in results["pass_at_k"].items()
        ]
        lines += markdown_table(["decomposer", "solver", "k", "pass@k", "sampled acc", "sub-q"], headroom)
    detail = [
        [c["decomposer"], c["solver"], f"{c['accuracy']:.3f}", c["n"], c["errors"], f"{c['mean_subquestions']:.2f}"]
        + [f"{c['valid_format']:.2f}", f"{c['tokens']['decomposer_in']}/{c['tokens']['decomposer_out']}"]
        + [f"{c['tokens']['solver_in']}/{c['tokens']['solver_out']}", f"{c['cost_usd_per_1k']:.4f}"]
        for c in cells
    ]
    header = ["decomposer", "solver", "acc", "n", "errors", "sub-q", "valid", "dec tok in/out", "solver tok in/out"]
    lines += ["", *markdown_table([*header, "$ / 1k"], detail)]
    failed = [c for c in cells if c["errors"]]
    if failed:  # accuracy counts a failed problem as wrong: say how many failed, and why
        lines += ["", "Failures (counted as wrong in accuracy):", ""]
        lines += [
            f"- {c['decomposer']} x {c['solver']}: {c['errors']} of {c['n']}, first: {c['first_error']}" for c in failed
        ]
    return "\n".join(lines) + "\n"


@dataclass
class EvalArgs:
    """Arguments of ``rlrefine eval`` (also from ``--config FILE.yaml``; flags override the file)."""

    data: str = field(default="world", metadata={"help": "dataset name or path"})
    split: str = field(default="test")
    limit: int | None = field(default=None, metadata={"help": "evaluate the first N problems"})
    domain: str | None = field(default=None, metadata={"help": "only problems of this domain"})
    decomposers: list[str] = field(default_factory=lambda: ["none", "oracle", "teacher"])
    solvers: list[str] = field(default_factory=lambda: list(DEFAULT_SOLVERS))
    out: str = field(default="runs/eval")
    prices: str | None = field(default=None, metadata={"help": "YAML file: name -> [USD/1M in, USD/1M out]"})
    batch_size: int = field(default=64)
    modes: list[str] = field(
        default_factory=lambda: ["static"], metadata={"help": "static, dynamic or both: how decomposers are run"}
    )
    cap: int | None = field(
        default=MAX_SUBQUESTIONS,
        metadata={"help": "the cap on sub-questions: valid_format's limit, dynamic mode's rounds (null: none)"},
    )


def load_prices(path: str | None) -> dict:
    """``--prices FILE.yaml``: name -> [USD per 1M input tokens, USD per 1M output tokens]. Anything else is one line
    naming the file, before any work (not a traceback, nor a silent zero)."""
    if not path:
        return {}
    try:
        table = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(table, dict):
        raise UsageError(
            f"{path}: expected a mapping of name to [USD per 1M input, USD per 1M output], got {type(table).__name__}"
        )
    for name, value in table.items():
        numbers = isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value
        )
        if not (numbers and len(value) == 2):
            raise UsageError(f"{path}: price of {name!r} must be [USD per 1M input, USD per 1M output], got {value!r}")
    return table


def main(argv: list[str] | None = None) -> dict:
    from rlrefine.core.settings import parse_config
    from rlrefine.data import load_split

    (args,) = parse_config(EvalArgs, argv, prog="rlrefine eval")
    rows = load_split(args.data, args.split, args.limit, args.domain)
    results = evaluate(
        rows,
        args.decomposers,
        args.solvers,
        args.out,
        load_prices(args.prices),
        args.batch_size,
        modes=args.modes,
        cap=args.cap,
    )
    sys.stdout.write(results_markdown(results))
    return results
