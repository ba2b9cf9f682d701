"""Seconds per SFT step and per GRPO step of a real pretrained decomposer on this machine, before and after the
speed settings of ``configs/smollm2.yaml``, measured side by side in one run (ratios are what count: these machines
are noisy).

    python experiments/bench_real_step.py [--model smollm2] [--steps 4] [--rounds 2]

``before`` is plain fp32 with TRL 1.16's fused LM head scoring every position (what it does off CUDA); ``after`` is
bf16 autocast with the head scoring only the labelled positions (``trainers.score_labelled_tokens_only``). Both take
16 sequences a step (SFT: SD-T rows with the paper's prompt; GRPO: 2 problems x 8 completions of up to 48 tokens),
the two settings alternate for ``--rounds``, and the first step of each is warm-up. GRPO's step is split by TRL's
own profiling hooks into generation, the policy's forward (the loss) and the rest (backward and optimizer); the
reward is the symbolic solver's (milliseconds). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from statistics import mean

SETTINGS = {"before": {"bf16": False, "compact": False}, "after": {"bf16": True, "compact": True}}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="a pretrained chat model: folder, hub id or smollm2")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import torch
    import trl.trainer.utils as trl_utils
    from trl.extras import profiling
    from trl.kernels.chunked_logprob import _use_triton as every_position

    from rlrefine.engines.models import resolve
    from rlrefine.training.trainers import score_labelled_tokens_only

    score_labelled_tokens_only()
    labelled_only = trl_utils._use_triton
    parts: dict[str, list[float]] = defaultdict(list)
    logged = profiling.ProfilingContext._log_metrics  # TRL's hooks time each part; they log to trackers only
    profiling.ProfilingContext._log_metrics = lambda self, seconds: parts[self.name].append(seconds)
    model = str(resolve(args.model))
    seconds: dict[str, list[float]] = defaultdict(list)
    try:
        for _ in range(args.rounds):  # the settings in turn: drift in the machine's load shows between rounds
            for name, setting in SETTINGS.items():
                trl_utils._use_triton = labelled_only if setting["compact"] else every_position
                seconds[f"sft_{name}"] += sft_steps(model, args.steps, setting["bf16"])[1:]
                parts.clear()
                seconds[f"grpo_{name}"] += grpo_steps(model, args.steps, setting["bf16"])[1:]
                for part, key in (("generation", "transformers.generate"), ("forward", "compute_loss")):
                    seconds[f"grpo_{name}_{part}"] += next(v for k, v in parts.items() if k.endswith(key))[1:]
    finally:
        trl_utils._use_triton, profiling.ProfilingContext._log_metrics = labelled_only, logged
    report = {"model": args.model, "steps": args.steps, "rounds": args.rounds, "threads": torch.get_num_threads()}
    report.update({k: round(mean(v), 2) for k, v in seconds.items()})
    for stage in ("sft", "grpo"):
        report[f"{stage}_speedup"] = round(report[f"{stage}_before"] / report[f"{stage}_after"], 2)
    print(json.dumps(report))
    return report


def sft_steps(model: str, steps: int, bf16: bool) -> list[float]:
    """Seconds of each SFT step (SD-T rows, the paper's prompt, 16 a step)."""
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from rlrefine.engines.models import load_tokenizer
    from rlrefine.training.sft import SFTArgs, distillation_data
    from rlrefine.training.trainers import TRAINER_DEFAULTS

    seconds = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *args, **kwargs):
            self.began = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            seconds.append(time.perf_counter() - self.began)

    data = distillation_data(SFTArgs(instruction=None, train_limit=16 * (steps + 1)))()
    with tempfile.TemporaryDirectory() as folder:
        settings = {**TRAINER_DEFAULTS, "bf16": bf16, "save_strategy": "no", "logging_steps": 1}
        config = SFTConfig(output_dir=folder, max_steps=steps, per_device_train_batch_size=16, **settings)
        policy = AutoModelForCausalLM.from_pretrained(model, dtype="float32")
        tokenizer = load_tokenizer(model)
        SFTTrainer(policy, config, train_dataset=data, processing_class=tokenizer, callbacks=[Clock()]).train()
    return seconds


def grpo_steps(model: str, steps: int, bf16: bool) -> list[float]:
    """Seconds of each GRPO step (TRL logs them) through the pipeline's RL stage."""
    from rlrefine.training.rl import refine
    from rlrefine.training.settings import parse_pipeline

    with tempfile.TemporaryDirectory() as folder:
        argv = ["--decomposer", model, "--run_dir", folder, "--instruction", "null", "--max_steps", str(steps)]
        argv += ["--per_device_train_batch_size", "16", "--num_generations", "8", "--max_completion_length", "48"]
        argv += ["--learning_rate", "5e-6", "--bf16", str(bf16), "--logging_steps", "1", "--save_strategy", "no"]
        pipeline, trl_args, model_args = parse_pipeline(argv)
        out = refine(pipeline, trl_args, model_args, Path(model), Path(folder))
        return [h["step_time"] for h in json.loads((out / "eval.json").read_text())["log_history"] if "step_time" in h]


if __name__ == "__main__":
    main()
