"""What the ablation scripts share: run the pipeline once per configuration (a finished run is reused, a killed one
resumed), and the settings of their --quick path. Each script is one command that writes its own run folders and an
``rlrefine report`` over them."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml

QUICK = [  # seconds, not minutes: the path CI runs (tiny data, a few steps, a small evaluation)
    "--train_limit", "64", "--sft", "{max_steps: 20}", "--max_steps", "2", "--per_device_train_batch_size", "8",
    "--num_generations", "4", "--max_completion_length", "32", "--eval_limit", "20", "--pass_k", "2",
    "--eval_solvers", "hops=1", "hops=2", "--rft_problems", "16", "--rft_samples", "4", "--rft_rounds", "1",
]  # fmt: skip


def parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    parser.add_argument("--out", type=Path, required=True, help="run folders and the report go here")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", help="a train.py config for every run (e.g. a real-model config)")
    parser.add_argument("--quick", action="store_true", help="a tiny version that runs in minutes (CI runs it)")
    return parser


def train(run: Path, argv: list[str], args: argparse.Namespace) -> Path:
    """One pipeline run into ``run`` (reused when finished, resumed when killed) with the script's shared options;
    settings its algorithm's TRL config does not have (generation settings, for RFT's SFT rounds) are left out."""
    from rlrefine.train import main

    if (run / "results.json").exists():
        return run
    valid = _settings(argv)
    common = []
    if args.config:
        chosen = yaml.safe_load(Path(args.config).read_text()) or {}
        config = run.parent / f"{run.name}.config.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump({k: v for k, v in chosen.items() if k in valid}))
        common += ["--config", str(config)]
    if args.quick:
        flags = [i for i, a in enumerate(QUICK) if a.startswith("--")] + [len(QUICK)]
        common += [a for i, j in zip(flags, flags[1:]) if QUICK[i][2:] in valid for a in QUICK[i:j]]
    resume = ["--resume"] if (run / "config.yaml").exists() and any(run.iterdir()) else []
    shared = ["--eval_cache", str(args.out / "eval-cache")]  # the baselines' cells are computed once, not per run
    main([*common, *argv, "--run_dir", str(run), *shared, *resume])
    return run


def _settings(argv: list[str]) -> set[str]:
    from dataclasses import fields

    from trl import ModelConfig

    from rlrefine.core.settings import early_option
    from rlrefine.training.settings import PipelineArgs, trl_config_class

    algorithm = early_option(argv, "algorithm")[0] or "grpo"
    return {f.name for cls in (PipelineArgs, trl_config_class(algorithm), ModelConfig) for f in fields(cls)}


def report(runs: list[Path], out: Path) -> Path:
    from rlrefine.evaluation.report import report as write

    path = write(runs, out, made_by=shlex.join(["python", *sys.argv]))
    print(path.read_text())
    return path
