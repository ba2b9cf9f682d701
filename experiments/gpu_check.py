"""The GPU path in one command, on one GPU in about ten minutes: one line per check, with its figure.

    python experiments/gpu_check.py [--out runs/gpu-check]

Checks (each in its own process, so that one's GPU memory is free for the next):
- ``vllm solver``: the vllm engine as a solver, against the hf engine on the same model and problems (greedy): the
  share of answers they agree on, and vLLM's tokens per second;
- ``vllm decomposer``: the vllm engine as a decomposer, tokens per second;
- ``grpo colocate``: SFT, then GRPO steps with TRL's colocated vLLM (``use_vllm``, ``vllm_mode: colocate``), and
  the evaluation matrix: seconds per RL step;
- ``vllm beside colocate``: a ``vllm:`` reward solver beside TRL's colocated vLLM is refused in one line;
- ``ppo``: two PPO steps on the GPU, critic included;
- ``hf batching``: ``experiments/bench_hf_solver.py``, batched generation against a loop of one (goal: >= 10x).

Everything runs offline on the bundled tiny models (no hub access needed). Exit code 1 when a check fails; 2 where
there is no CUDA GPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "rlrefine" / "assets"
TINY = [
    "--data", "world:small", "--train_limit", "256", "--eval_limit", "100", "--eval_solvers", "hops=1", "hops=2",
    "--pass_k", "2", "--sft", "{max_steps: 60}", "--per_device_train_batch_size", "16", "--num_generations", "8",
    "--logging_steps", "1",
]  # fmt: skip


def vllm_solver(out: Path) -> str:
    from rlrefine.data import load_split
    from rlrefine.solvers import make_solver

    rows = list(load_split("world:small", "test", 256))
    subquestions = [r["subquestions"] for r in rows]
    model = str(ASSETS / "tiny-base")
    hf = make_solver({"name": "hf", "model": model, "max_tokens": 32}).solve(rows, subquestions)
    solver = make_solver({"name": "vllm", "model": model, "max_tokens": 32, "gpu_memory_utilization": 0.3})
    began = time.perf_counter()
    fast = solver.solve(rows, subquestions)
    seconds = time.perf_counter() - began
    agree = sum(a.answer == b.answer for a, b in zip(hf, fast)) / len(rows)
    tokens = sum(r.completion_tokens for r in fast)
    return f"hf and vllm agree on {agree:.0%} of {len(rows)} greedy answers; vllm {tokens / seconds:,.0f} tok/s"


def vllm_decomposer(out: Path) -> str:
    from rlrefine.data import load_split
    from rlrefine.decomposers import make_decomposer

    rows = list(load_split("world:small", "test", 256))
    spec = {"name": "vllm", "model": str(ASSETS / "tiny-base"), "max_tokens": 48, "gpu_memory_utilization": 0.3}
    decomposer = make_decomposer(spec)
    began = time.perf_counter()
    done = decomposer.decompose(rows)
    seconds = time.perf_counter() - began
    tokens = sum(d.completion_tokens for d in done)
    return f"{len(done)} decompositions, {tokens / seconds:,.0f} tok/s"


def _train(out: Path, *flags: str) -> dict:
    from rlrefine.train import main

    main(["--run_dir", str(out), "--overwrite", *TINY, "--bf16", "true", *flags])
    return json.loads((out / "rl" / "eval.json").read_text())["training"]


def grpo_colocate(out: Path) -> str:
    flags = ["--max_steps", "5", "--use_vllm", "true", "--vllm_mode", "colocate"]
    facts = _train(out / "grpo", *flags, "--vllm_gpu_memory_utilization", "0.3")
    return f"{facts['steps']} GRPO steps, {60 * facts['launch_minutes'] / facts['steps']:.1f} s per step"


def vllm_beside_colocate(out: Path) -> str:
    from rlrefine.core.protocols import UsageError
    from rlrefine.train import main

    solver = f"vllm:{ASSETS / 'tiny-base'}"
    flags = ["--use_vllm", "true", "--vllm_mode", "colocate", "--train_solver", solver, "--max_steps", "1"]
    try:
        main(["--run_dir", str(out / "refused"), *TINY, *flags])
    except UsageError as exc:
        return f"refused: {str(exc)[:90]}..."
    raise AssertionError("a vllm: solver beside TRL's colocated vLLM was not refused")


def ppo(out: Path) -> str:
    facts = _train(out / "ppo", "--algorithm", "ppo", "--max_steps", "2")
    return f"{facts['steps']} PPO steps, {60 * facts['launch_minutes'] / facts['steps']:.1f} s per step"


def hf_batching(out: Path) -> str:
    cmd = [sys.executable, str(ROOT / "experiments" / "bench_hf_solver.py"), "--problems", "512", "--batch_size", "128"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return ", ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())


CHECKS = {
    "vllm solver": vllm_solver,
    "vllm decomposer": vllm_decomposer,
    "grpo colocate": grpo_colocate,
    "vllm beside colocate": vllm_beside_colocate,
    "ppo": ppo,
    "hf batching": hf_batching,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    parser.add_argument("--one", choices=sorted(CHECKS), help=argparse.SUPPRESS)  # a check in this process
    args = parser.parse_args()
    import torch

    if args.one:
        print(CHECKS[args.one](args.out))
        return 0
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing checked (each check needs one GPU)")
        return 2
    failed = 0
    for name in CHECKS:
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--out", str(args.out), "--one", name], capture_output=True, text=True
        )
        seconds = time.perf_counter() - began
        lines = (done.stdout if done.returncode == 0 else done.stderr).strip().splitlines() or ["(no output)"]
        failed += done.returncode != 0
        print(f"{name}: {'ok' if done.returncode == 0 else 'FAILED'} in {seconds:.0f} s: {lines[-1]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
