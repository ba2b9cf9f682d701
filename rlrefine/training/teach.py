"""``rlrefine teach``: teacher decompositions for a dataset split, written as SFT data (SD-T, or SD-R).

    rlrefine teach --data gsm8k --split train --teacher openai:gpt-4o-mini --out teach/gsm8k-sdt.jsonl
    rlrefine teach --data gsm8k --split train --teacher openai:gpt-4o-mini \\
        --solver 'openai:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1' --out teach/gsm8k-sdr.jsonl

The teacher gets the paper's decomposition prompt (at most three sub-questions, or "No decomposition"; an LLM teacher
sees one worked example first). A reply that holds no decomposition at all (prose, a refusal, nothing:
``format.parse(...).parseable`` is false) goes to ``OUT.rejected.jsonl`` with ``"reason": "unparseable"``
(``--keep_unparseable`` keeps it); a decomposition with a named flaw (a repeated or extra sub-question) is kept, as
SD-T imitates its teacher, flaws included, and counted by flaw. With ``--solver`` each decomposition goes through
that solver and only those that led it to the gold answer are kept (SD-R); the others are rejected as ``wrong``. The
summary counts ``kept``, ``flawed`` (kept, by flaw in ``flaws``), ``unparseable``, ``wrong`` and ``errors``. Every batch is appended and fsynced as it finishes, so a
killed run resumes without redoing a finished row (kept or rejected); a row whose teacher or solver call
failed is not written, so the next run retries it. ``OUT`` rows are TRL prompt-completion conversations (plus
``id``, ``teacher``, ``solver``, ``correct``, token counts): ``load_dataset("json", data_files=OUT)`` is SFT data.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from rlrefine.core.atomic import append_jsonl, read_jsonl
from rlrefine.core.format import decomposer_messages, parse
from rlrefine.core.protocols import UsageError
from rlrefine.data import require
from rlrefine.decomposers import Decomposer, make_decomposer
from rlrefine.solvers import Solver, make_solver, solve_and_grade


@dataclass
class TeachArgs:
    """Arguments of ``rlrefine teach`` (also from ``--config FILE.yaml``; flags override the file)."""

    data: str = field(default="world", metadata={"help": "dataset name or path (rlrefine.data)"})
    split: str = field(default="train")
    limit: int | None = field(default=None, metadata={"help": "the first N problems of the split"})
    teacher: str = field(default="teacher", metadata={"help": "decomposer spec: openai:..., vllm:..., hf:..., ..."})
    solver: str | None = field(default=None, metadata={"help": "SD-R: keep only rows this solver then gets right"})
    out: str = field(default="runs/teach/decompositions.jsonl", metadata={"help": "SFT rows (JSONL)"})
    batch_size: int = field(default=64, metadata={"help": "problems per teacher call and per fsynced append"})
    instruction: str | None = field(
        default=None, metadata={"help": "system text of the student's SFT prompt: default the paper's; '' drops it"}
    )
    keep_unparseable: bool = field(
        default=False, metadata={"help": "keep replies that hold no decomposition (prose, refusals, empty) too"}
    )
    overwrite: bool = field(default=False, metadata={"help": "start over instead of resuming OUT"})


def rejected_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name.removesuffix(".jsonl") + ".rejected.jsonl")


def _done(out: Path, teacher: str, solver: str | None) -> set:
    """Ids already finished in ``out`` and its rejects; rows from another teacher or solver are an error."""
    done = set()
    for path in (out, rejected_path(out)):
        for row in read_jsonl(path):
            if (row.get("teacher"), row.get("solver")) != (teacher, solver):
                raise UsageError(
                    f"{path} holds rows from teacher {row.get('teacher')!r} and solver {row.get('solver')!r}, not "
                    f"{teacher!r} and {solver!r}; pass --overwrite or another --out"
                )
            done.add(row["id"])
    return done


def teach(
    rows: Sequence[Mapping],
    teacher: str | Mapping | Decomposer,
    out: str | Path,
    solver: str | Mapping | Solver | None = None,
    batch_size: int = 64,
    instruction: str | None = None,
    progress: bool = True,
    keep_unparseable: bool = False,
) -> dict:
    """Decompose ``rows`` with ``teacher`` (optionally filtered through ``solver``), appending to ``out``."""
    out = Path(out)
    ids = [row["id"] for row in rows]
    if len(set(ids)) != len(ids):
        raise UsageError("teach: problem ids must be unique (resuming is by id)")
    dec = make_decomposer(teacher)
    require(f"decomposer {dec.name!r}", getattr(dec, "requires", ()), rows, "the data")  # before any work
    sol = make_solver(solver) if solver is not None else None
    sol_name = sol.name if sol else None
    done = _done(out, dec.name, sol_name)
    todo = [row for row in rows if row["id"] not in done]
    counts = {"problems": len(rows), "resumed": len(rows) - len(todo), "kept": 0, "flawed": 0, "rejected": 0}
    counts.update({"unparseable": 0, "wrong": 0, "errors": 0, "flaws": Counter()})
    bar = tqdm(total=len(rows), initial=counts["resumed"], desc=f"teach {dec.name}", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        decomposed = dec.decompose(batch)
        good = [(row, d, parse(d.text)) for row, d in zip(batch, decomposed) if not getattr(d, "error", None)]
        usable = [i for i, (_, _, p) in enumerate(good) if keep_unparseable or p.parseable]  # only these are solved
        graded = {}
        if sol and usable:
            graded = solve_and_grade([good[i][0] for i in usable], [good[i][2].subquestions for i in usable], sol)
            graded = dict(zip(usable, graded))
        kept, rejected = [], []
        usable = set(usable)
        for i, (row, d, p) in enumerate(good):
            result = graded.get(i, {"answer": None, "score": None, "error": None})
            if result["error"]:
                continue  # the solver failed: retried next run
            score = result["score"]
            record = {
                "id": row["id"],
                "prompt": decomposer_messages(row["context"], row["question"], instruction),
                "completion": [{"role": "assistant", "content": d.text}],
                "teacher": dec.name,
                "solver": sol_name,
                "correct": None if score is None else score == 1.0,
                "score": score,
                "solver_answer": result["answer"],
                "n_subquestions": p.count,
                "valid": p.valid,
                "problems": list(p.problems),
                "prompt_tokens": d.prompt_tokens,
                "completion_tokens": d.completion_tokens,
            }
            reason = "unparseable" if i not in usable else "wrong" if score not in (None, 1.0) else None
            if reason:
                rejected.append({**record, "reason": reason})
                counts[reason] += 1
            else:
                kept.append(record)
                counts["flawed"] += not p.valid
                counts["flaws"].update(p.problems)
        counts["errors"] += len(batch) - len(kept) - len(rejected)
        counts["kept"] += len(kept)
        counts["rejected"] += len(rejected)
        if kept:
            append_jsonl(out, kept)
        if rejected:
            append_jsonl(rejected_path(out), rejected)
        bar.update(len(batch))
    bar.close()
    counts["flaws"] = dict(counts["flaws"].most_common())
    counts["total_kept"] = len(read_jsonl(out))
    return counts


def main(argv: list[str] | None = None) -> dict:
    from rlrefine.core.settings import parse_config
    from rlrefine.data import load_split

    (args,) = parse_config(TeachArgs, argv, prog="rlrefine teach")
    rows = list(load_split(args.data, args.split, args.limit))
    if args.overwrite:
        Path(args.out).unlink(missing_ok=True)
        rejected_path(args.out).unlink(missing_ok=True)
    counts = teach(
        rows,
        args.teacher,
        args.out,
        args.solver,
        args.batch_size,
        args.instruction,
        keep_unparseable=args.keep_unparseable,
    )
    print(json.dumps({"out": args.out, **counts}))
    if counts["unparseable"]:
        print(
            f"{counts['unparseable']} teacher repl(ies) held no decomposition (prose, a refusal, nothing): written to "
            f"{rejected_path(args.out)} with their reason; --keep_unparseable --overwrite keeps them"
        )
    if counts["errors"]:
        print(f"{counts['errors']} problem(s) failed in the teacher or solver; rerun the same command to retry them")
    return counts
