"""Seconds per RL step of GRPO, RLOO and PPO from the same decomposer, measured in one run (ratios are what count:
these machines are noisy).

    OMP_NUM_THREADS=1 python experiments/bench_rl_step.py --decomposer runs/default/sft [--steps 20]

Each algorithm trains ``--steps`` steps with the default RL settings (4 prompts x 8 completions, 48 tokens) on the
default world, in turn, twice (GRPO, RLOO, PPO, GRPO, RLOO, PPO: drift in the machine's load shows as a difference
between the two rounds); the first two steps of each are warm-up. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from statistics import mean

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decomposer", required=True, help="the SFT student every algorithm starts from")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--algorithms", nargs="+", default=["grpo", "rloo", "ppo"])
    args = parser.parse_args()

    from rlrefine.training.rl import refine
    from rlrefine.training.settings import parse_pipeline

    seconds: dict[str, list[float]] = {a: [] for a in args.algorithms}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(2):
            for algorithm in args.algorithms:
                run = os.path.join(folder, f"{algorithm}-{round_}")
                argv = ["--algorithm", algorithm, "--decomposer", args.decomposer, "--run_dir", run]
                argv += ["--max_steps", str(args.steps), "--logging_steps", "1", "--save_strategy", "no"]
                pipeline, trl_args, model_args = parse_pipeline(argv)
                out = refine(pipeline, trl_args, model_args, args.decomposer, Path(run))
                log = json.loads((out / "eval.json").read_text())["log_history"]
                seconds[algorithm] += [h["step_time"] for h in log if "step_time" in h][2:]
    report = {"steps": args.steps, "threads": int(os.environ["OMP_NUM_THREADS"])}
    report.update({f"{a}_s_per_step": round(mean(s), 3) for a, s in seconds.items()})
    base = mean(seconds[args.algorithms[0]])
    report.update({f"{a}_over_{args.algorithms[0]}": round(mean(s) / base, 2) for a, s in seconds.items()})
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
