"""The grader against GSM8K's own gold solutions, and what grading costs inside a symbolic evaluation.

    OMP_NUM_THREADS=1 python experiments/bench_grading.py [GSM8K_DIR] [--problems 1000]

1. Agreement: every GSM8K gold solution (train, test and the socratic files found in GSM8K_DIR, by default
   ../shared/data/gsm8k next to the repository) must grade 1.0 against its own "####" number, read as the
   loader reads it (``gsm8k_answer``). A missing folder or file is reported and skipped.
2. Share: ``evaluate`` on ``--problems`` world test problems x 3 decomposers x 4 solvers, timed, with every
   ``grade`` call it makes (through ``rlrefine.solvers.base``, where solving and grading are one function) timed as well. The same calls are then timed again
   on their own with the grader's caches emptied (the cold case).
3. The math-verify path: the cost of one grade of "\\frac{3}{4}" against "0.75", cold (caches emptied each
   call) and warm, next to a plain "52" against "52".

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
GSM8K_FILES = ("test.jsonl", "train.jsonl", "test_socratic.jsonl", "train_socratic.jsonl")
DECOMPOSERS = ["none", "oracle", "teacher"]
SOLVERS = ["hops=1", "hops=2", "noise=0.1", "memory=1"]


def clear_caches() -> None:
    from rlrefine.core import numeric

    numeric._value.cache_clear()
    numeric._math_value.cache_clear()


def gsm8k_agreement(folder: Path) -> dict:
    from rlrefine.core.atomic import read_jsonl
    from rlrefine.core.grading import extract_answer, grade
    from rlrefine.data.real import gsm8k_answer

    out = {}
    for name in GSM8K_FILES:
        path = folder / name
        if not path.is_file():
            out[name] = "absent: skipped"
            continue
        rows = read_jsonl(path)
        start = time.perf_counter()
        wrong = [i for i, r in enumerate(rows) if grade(extract_answer(r["answer"]), gsm8k_answer(r["answer"])) != 1.0]
        out[name] = {
            "rows": len(rows),
            "agree": len(rows) - len(wrong),
            "agreement": (len(rows) - len(wrong)) / max(len(rows), 1),
            "first_disagreements": wrong[:5],
            "seconds": round(time.perf_counter() - start, 3),
        }
    return out


def evaluation_share(problems: int) -> dict:
    from rlrefine.core.grading import grade
    from rlrefine.data import load_split
    from rlrefine.evaluation.evaluate import evaluate
    from rlrefine.solvers import base

    rows = list(load_split("world", "test", problems))
    calls: list[tuple] = []
    spent = [0.0]

    def timed_grade(prediction, gold, metric="numeric"):
        start = time.perf_counter()
        score = grade(prediction, gold, metric)
        spent[0] += time.perf_counter() - start
        calls.append((prediction, gold, metric))
        return score

    clear_caches()
    base.grade = timed_grade
    try:
        start = time.perf_counter()
        evaluate(rows, DECOMPOSERS, SOLVERS, progress=False)
        total = time.perf_counter() - start
    finally:
        base.grade = grade

    clear_caches()
    start = time.perf_counter()
    for call in calls:
        grade(*call)
    cold = time.perf_counter() - start
    return {
        "problems": len(rows),
        "cells": len(DECOMPOSERS) * len(SOLVERS),
        "grade_calls": len(calls),
        "answers_none": sum(p is None for p, *_ in calls),
        "answers_other_than_none_or_integer": sum(
            p is not None and not str(p).strip().lstrip("-").isdigit() for p, *_ in calls
        ),
        "evaluate_seconds": round(total, 3),
        "grading_seconds_in_evaluate": round(spent[0], 4),
        "grading_share_of_evaluate": spent[0] / total,
        "same_calls_again_cold_seconds": round(cold, 4),
        "cold_share_of_evaluate": cold / total,
        "us_per_grade_call": 1e6 * spent[0] / max(len(calls), 1),
    }


def per_call(prediction: str, gold: str, repeats: int, cold: bool) -> float:
    from rlrefine.core.grading import grade

    assert grade(prediction, gold) == 1.0
    start = time.perf_counter()
    for _ in range(repeats):
        if cold:
            clear_caches()
        grade(prediction, gold)
    return 1e6 * (time.perf_counter() - start) / repeats


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gsm8k", nargs="?", default=str(ROOT.parent / "shared" / "data" / "gsm8k"))
    parser.add_argument("--problems", type=int, default=1000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))

    folder = Path(args.gsm8k)
    if folder.is_dir():
        agreement = gsm8k_agreement(folder)
    else:
        print(f"GSM8K folder {folder} not found: agreement check skipped", file=sys.stderr)
        agreement = f"skipped: {folder} not found"
    share = evaluation_share(args.problems)
    from rlrefine.core.grading import grade

    grade("\\frac{1}{2}", "0.5")  # math-verify imported before timing it
    costs = {
        "plain_52_warm_us": per_call("52", "52", 20000, cold=False),
        "plain_52_cold_us": per_call("52", "52", 20000, cold=True),
        "frac_3_4_warm_us": per_call("\\frac{3}{4}", "0.75", 2000, cold=False),
        "frac_3_4_cold_us": per_call("\\frac{3}{4}", "0.75", 200, cold=True),
        "slash_3_4_cold_us": per_call("3/4", "0.75", 200, cold=True),
        "sci_1.5e3_cold_us": per_call("1.5 \\times 10^{3}", "1500", 100, cold=True),
    }
    result = {"gsm8k_agreement": agreement, "symbolic_eval": share, "per_call_us": costs}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
