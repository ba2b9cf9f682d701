"""Throughput of the ``hf`` solver backend: one batched call vs. a per-sample loop, with a tiny offline model.

    OMP_NUM_THREADS=1 python experiments/bench_hf_solver.py [--problems 128] [--max_new_tokens 64]

Both runs use the same solver object (``make_solver("hf:...")``: the paper's prompt, greedy decoding); the loop
calls ``solve`` once per problem, as a naive integration would. An untrained model rarely stops early, so both
generate the same number of tokens. Prints one JSON line (tokens/s and the ratio); numbers go in README.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=128)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()

    import torch

    from rlrefine.data.world import generate, world_config
    from rlrefine.engines.models import build_model, build_tokenizer
    from rlrefine.solvers import make_solver

    world = generate(world_config("small"))
    rows = list(world["test"])[: args.problems]
    subquestions = [r["subquestions"] for r in rows]
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = build_tokenizer([r["context"] + "\nQuestion: " + r["question"] for r in world["train"]], 600)
        build_model(tokenizer, hidden=args.hidden, layers=args.layers, heads=4).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        spec = {
            "backend": "hf",
            "model": folder,
            "device": "cpu",
            "dtype": "float32",
            "max_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
        }
        solver = make_solver(spec)
    solver.solve(rows[:4], subquestions[:4])  # warm-up

    def timed(run) -> tuple[float, int]:
        start = time.perf_counter()
        results = run()
        return time.perf_counter() - start, sum(r.completion_tokens for r in results)

    batched_s, batched_tokens = timed(lambda: solver.solve(rows, subquestions))
    loop_s, loop_tokens = timed(lambda: [solver.solve([r], [sq])[0] for r, sq in zip(rows, subquestions)])
    report = {
        "problems": len(rows),
        "model": f"llama {args.layers}x{args.hidden}",
        "threads": torch.get_num_threads(),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "batched_s": round(batched_s, 2),
        "loop_s": round(loop_s, 2),
        "batched_tok_per_s": round(batched_tokens / batched_s),
        "loop_tok_per_s": round(loop_tokens / loop_s),
        "speedup": round((batched_tokens / batched_s) / (loop_tokens / loop_s), 1),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
