"""The rlrefine pipeline, top to bottom: world -> teacher data -> SFT decomposer -> RL -> evaluate -> report.

    accelerate launch rlrefine/train.py [--config configs/X.yaml] [flags]

With no arguments it runs the embedded default on a CPU. TRL's options for the chosen algorithm pass straight
through (GRPO: ``GRPOConfig``, RLOO: ``RLOOConfig``, RFT: ``SFTConfig`` for its fine-tuning rounds), so
``--learning_rate``, ``--num_generations``, ``--loss_type dr_grpo``, ``--importance_sampling_level sequence``
work as in TRL. The run folder holds the config used, the SFT and RL decomposers (each a plain HF folder
with a model card), ``results.json`` and ``results.md``. ``--resume`` continues a killed run.
"""

from __future__ import annotations

import json
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import yaml

from rlrefine.training.settings import (
    DataArgs,
    PipelineArgs,
    TeacherArgs,
    UsageError,
    changed_settings,
    concern,
    parse_pipeline,
    preflight,
    refuse_clashes,
    run_config,
)


def same_run(argv: list[str], args: PipelineArgs, trl_args, model_args) -> None:
    """A resume must not change the settings: the run folder's config.yaml describes the models it holds."""
    saved = Path(args.run_dir, "config.yaml")
    if args.resume and saved.is_file():
        differ = changed_settings(yaml.safe_load(saved.read_text()) or {}, argv, args, trl_args, model_args)
        if differ:
            raise UsageError(
                f"--resume with other settings than {saved}: {', '.join(differ)}; resume with the same settings "
                f"(--config {saved} --resume) or start a new run (--run_dir NEW, or --overwrite)"
            )


def prepare_run_dir(argv: list[str], args: PipelineArgs, trl_args, model_args) -> Path:
    """The run folder, with the settings that repeat the run in ``config.yaml`` (kept as it is on a resume)."""
    from rlrefine.core.atomic import write_text

    run = Path(args.run_dir)
    began = run.exists() and any(p.name != "config.yaml" for p in run.iterdir())  # config alone: nothing was done
    if began and args.overwrite:
        shutil.rmtree(run)
    elif began and not args.resume:
        raise UsageError(f"{run} already holds a run; pass --resume to continue it or --overwrite to start over")
    elif began and (run / "config.yaml").is_file():
        return run
    run.mkdir(parents=True, exist_ok=True)
    write_text(run / "config.yaml", yaml.safe_dump(run_config(argv, args, trl_args, model_args), sort_keys=False))
    return run


def sft_stage(args: PipelineArgs, model_args, run: Path, seed: int) -> Path:
    """Distill the student decomposer from the teacher (SD-T by default) with TRL's SFTTrainer."""
    import dataclasses

    from trl import SFTConfig

    from rlrefine.training.sft import TINY_DEFAULTS, SFTArgs, train_sft

    out = run / "sft"
    if (out / "config.json").exists():
        return out
    settings = {**TINY_DEFAULTS, "seed": seed, **args.sft, "output_dir": str(out)}
    settings.pop("model_name_or_path")
    model_args = dataclasses.replace(model_args, model_name_or_path=args.base_model)  # LoRA etc. as configured
    script = SFTArgs(
        **concern(args, DataArgs),
        **concern(args, TeacherArgs),
        variant=args.sft_variant,
        filter_solver=args.train_solver,
        rollout=args.rollout,
        eval_limit=0,
    )
    return train_sft(script, SFTConfig(**settings), model_args)


def eval_stage(args: PipelineArgs, trl_args, run: Path, sft: Path, rl: Path) -> dict:
    """Every decomposer (teacher, SFT, RL, with none/oracle for scale) x every default solver, plus pass@k. Students
    decode as long as RL let them write (at least the student default of 64 tokens): no cut that training never saw."""
    from rlrefine.core.atomic import write_json, write_text
    from rlrefine.data import load_split
    from rlrefine.decomposers import make_decomposer
    from rlrefine.evaluation.evaluate import evaluate, pass_at_k, results_markdown
    from rlrefine.evaluation.plots import plot_run
    from rlrefine.solvers import DEFAULT_SOLVERS, shared_solver
    from rlrefine.training.settings import subquestion_cap

    rows = list(load_split(args.data, args.eval_split, args.eval_limit))
    max_tokens = max(64, getattr(trl_args, "max_completion_length", None) or 0)
    students = [
        make_decomposer(
            {
                "name": "model",
                "path": str(path),
                "instruction": args.instruction,
                "label": label,
                "max_tokens": max_tokens,
            }
        )
        for label, path in (("sft", sft), (f"rl-{args.algorithm}", rl))
    ]
    solvers = [shared_solver(s) for s in args.eval_solvers or DEFAULT_SOLVERS]  # the ones checked at start-up
    decomposers = ["none", "oracle", args.teacher, *students]  # without gold sub-questions: no oracle, with a note
    results = evaluate(
        rows,
        decomposers,
        solvers,
        run / "eval",
        skip_unfit=True,
        cache=args.eval_cache,
        modes=args.eval_modes,
        cap=subquestion_cap(args.rewards),  # the format and the dialogues meet the cap training met
    )
    results["pass_at_k"] = {
        s.name: pass_at_k(s, rows, args.train_solver, args.pass_k, seed=trl_args.seed) for s in students if args.pass_k
    }
    write_json(run / "results.json", results)
    write_text(run / "results.md", results_markdown(results))
    card = Path(rl, "eval.json")
    plot_run(results, json.loads(card.read_text()).get("log_history", []) if card.exists() else [], run / "report.png")
    return results


def main(argv: list[str] | None = None) -> dict:
    from accelerate import PartialState

    from rlrefine.training.rl import build_rewards, refine

    argv = list(sys.argv[1:] if argv is None else argv)
    args, trl_args, model_args = parse_pipeline(argv)
    same_run(argv, args, trl_args, model_args)  # a resume continues the run its folder describes, or nothing
    refuse_clashes(args, trl_args)  # servers and in-process vLLM engines that would collide on the GPUs
    build_rewards(args.rewards, args.train_solver)  # every reward, setting and solver resolved now, before any work
    preflight(args)  # the dataset, its splits, the teacher and every eval solver, against the data they will meet
    # one process group for the run, with TrainingArguments' ddp_timeout for every collective it waits at
    state = PartialState(cpu=trl_args.use_cpu, timeout=timedelta(seconds=trl_args.ddp_timeout))
    run = prepare_run_dir(argv, args, trl_args, model_args) if state.is_main_process else Path(args.run_dir)
    state.wait_for_everyone()
    sft = args.decomposer or sft_stage(args, model_args, run, trl_args.seed)
    rl = refine(args, trl_args, model_args, sft, run)
    if not state.is_main_process:  # the evaluation is the main process's alone: no other waits for it at a
        return {}  # collective, whose timeout an evaluation against a served solver can outlast
    results = eval_stage(args, trl_args, run, sft, rl)
    print((run / "results.md").read_text())
    return results


if __name__ == "__main__":
    from rlrefine.commands.cli import main as cli

    sys.exit(cli(["train", *sys.argv[1:]]))
