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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from rlrefine.sft import TRAINER_DEFAULTS

ALGORITHMS = ("grpo", "rloo", "rft")  # "ppo" (with a critic) is planned; the key leaves room for it

DEFAULT_REWARDS = [
    {"name": "solver", "subquestion_cost": 0.05},  # the solver is --train_solver
    {"name": "format", "weight": 0.1},
]

# TRL settings that suit the tiny world policy on a CPU; a config file or flags override any of them.
RL_DEFAULTS = {
    "learning_rate": 1e-4,
    "lr_scheduler_type": "constant_with_warmup",
    "warmup_steps": 10,
    "max_steps": 300,
    "per_device_train_batch_size": 32,
    "num_generations": 8,
    "max_completion_length": 48,
    "temperature": 1.0,
    "beta": 0.0,
    "logging_steps": 10,
    "save_steps": 50,
    "seed": 0,
    **TRAINER_DEFAULTS,
}


@dataclass
class PipelineArgs:
    """The pipeline's own settings; TRL's trainer settings are parsed next to these."""

    data: str = field(default="world", metadata={"help": "dataset name or path (train / validation / test splits)"})
    run_dir: str = field(default="runs/default", metadata={"help": "everything this run writes"})
    algorithm: str = field(default="grpo", metadata={"help": "grpo, rloo or rft"})
    base_model: str = field(default="base", metadata={"help": "what the SFT student starts from"})
    decomposer: str | None = field(default=None, metadata={"help": "start RL from this decomposer; skips SFT"})
    sft_variant: str = field(default="sd-t", metadata={"help": "sd-t, sd-r or oracle"})
    sft: str | None = field(default=None, metadata={"help": "SFTConfig overrides for the SFT stage (a YAML mapping)"})
    teacher: str = field(default="teacher")
    instruction: str | None = field(
        default="", metadata={"help": "the decomposer prompt's instruction: '' none (tiny models), null the paper's"}
    )
    train_solver: str = field(default="hops=1", metadata={"help": "the frozen solver whose correctness is the reward"})
    rewards: str | None = field(
        default=None, metadata={"help": "reward plugins: a YAML list (on the command line too: '[{name: solver}]')"}
    )
    train_limit: int | None = field(default=None, metadata={"help": "use the first N training problems"})
    train_domain: str | None = field(default=None, metadata={"help": "train on one domain only (transfer ablation)"})
    rl_minutes: float | None = field(default=None, metadata={"help": "wall-clock budget of the RL stage"})
    rft_samples: int = field(default=8, metadata={"help": "RFT: decompositions sampled per problem"})
    rft_problems: int = field(
        default=250, metadata={"help": "RFT: problems sampled per round (small rounds: more of them fit a budget)"}
    )
    rft_rounds: int = field(default=3, metadata={"help": "RFT: sample -> filter -> SFT rounds"})
    eval_split: str = field(default="test")
    eval_limit: int | None = field(default=1000)
    eval_solvers: list[str] | None = field(default=None, metadata={"help": "default: the default solver set"})
    pass_k: int = field(default=8, metadata={"help": "pass@k of SFT and RL decomposers with the training solver"})
    resume: bool = field(default=False, metadata={"help": "continue a killed run in run_dir"})
    overwrite: bool = field(default=False, metadata={"help": "delete run_dir and start over"})

    def __post_init__(self) -> None:
        if not isinstance(self.sft, dict):
            self.sft = _inline("sft", self.sft, dict) if self.sft else {}
        if self.rewards is None:
            self.rewards = [dict(r) for r in DEFAULT_REWARDS]
        elif isinstance(self.rewards, str):
            self.rewards = _inline("rewards", self.rewards, list)
        if self.algorithm not in ALGORITHMS:
            hint = " (PPO with a critic is planned, not built yet)" if self.algorithm == "ppo" else ""
            raise ValueError(f"unknown algorithm {self.algorithm!r}{hint}; valid: {', '.join(ALGORITHMS)}")


def _inline(key: str, text: str, kind: type):
    """A mapping or list given on the command line, as YAML (JSON is YAML too)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"--{key}: not valid YAML/JSON ({str(exc).splitlines()[0]}): {text}") from None
    if not isinstance(value, kind):
        raise ValueError(f"--{key}: expected a YAML/JSON {kind.__name__}, got {text!r}")
    return value


def trl_config_class(algorithm: str):
    from trl import GRPOConfig, RLOOConfig, SFTConfig

    return {"grpo": GRPOConfig, "rloo": RLOOConfig, "rft": SFTConfig}[algorithm]


def _sources(argv: list[str]) -> tuple[str, dict, dict]:
    """The algorithm, the ``--config`` file's mapping and our TRL defaults for that algorithm."""
    from rlrefine.cli import early_option

    algorithm, file_config = early_option(argv, "algorithm")
    algorithm = algorithm or "grpo"
    if algorithm not in ALGORITHMS:
        PipelineArgs(algorithm=algorithm)  # raises the error that lists the valid ones
    defaults = dict(RL_DEFAULTS)
    if algorithm == "rft":  # RFT's rounds are SFT: no generation settings, SFT's learning rate
        defaults = {k: v for k, v in defaults.items() if k not in _GENERATION_KEYS}
        defaults.update(learning_rate=5e-4, max_steps=200, max_length=256)
    return algorithm, file_config, defaults


def parse(argv: list[str] | None):
    """Pipeline settings plus the TRL config of the chosen algorithm, from ``--config`` and flags."""
    from trl import ModelConfig

    from rlrefine.cli import parse_config

    argv = list(sys.argv[1:] if argv is None else argv)
    algorithm, _, defaults = _sources(argv)
    return parse_config([PipelineArgs, trl_config_class(algorithm), ModelConfig], argv, "rlrefine train", defaults)


_GENERATION_KEYS = {"num_generations", "max_completion_length", "temperature", "beta"}


def prepare_run_dir(argv: list[str], args: PipelineArgs, trl_args, model_args) -> Path:
    from rlrefine.cli import UsageError

    run = Path(args.run_dir)
    if run.exists() and any(run.iterdir()):
        if args.overwrite:
            shutil.rmtree(run)
        elif not args.resume:
            raise UsageError(f"{run} already holds a run; pass --resume to continue it or --overwrite to start over")
    run.mkdir(parents=True, exist_ok=True)
    from rlrefine.atomic import write_text

    write_text(run / "config.yaml", yaml.safe_dump(run_config(argv, args, trl_args, model_args), sort_keys=False))
    return run


def run_config(argv: list[str], args: PipelineArgs, trl_args, model_args) -> dict:
    """What ``--config`` reads back to repeat the run: every pipeline setting, plus the TRL and model settings
    that the config file, the flags or our defaults chose (not TRL's hundred-odd untouched or derived ones)."""
    _, file_config, defaults = _sources(argv)
    chosen = {*file_config, *defaults, *(a[2:].split("=")[0] for a in argv if a.startswith("--"))}
    config = {k: v for k, v in asdict(args).items() if k not in ("overwrite", "resume")}  # how, not what, to run
    for given in (trl_args.to_dict(), asdict(model_args)):
        config.update({k: v for k, v in given.items() if k in chosen and k not in config and k != "output_dir"})
    return config


def sft_stage(args: PipelineArgs, model_args, run: Path, seed: int) -> Path:
    """Distill the student decomposer from the teacher (SD-T by default) with TRL's SFTTrainer."""
    import dataclasses

    from trl import SFTConfig

    from rlrefine.sft import TINY_DEFAULTS, SFTArgs, train_sft

    out = run / "sft"
    if (out / "config.json").exists():
        return out
    settings = {**TINY_DEFAULTS, "seed": seed, **args.sft, "output_dir": str(out)}
    settings.pop("model_name_or_path")
    model_args = dataclasses.replace(model_args, model_name_or_path=args.base_model)  # LoRA etc. as configured
    sft_fields = set(SFTConfig.__dataclass_fields__)
    unknown = sorted(set(settings) - sft_fields)
    if unknown:
        raise ValueError(f"unknown sft setting(s): {', '.join(unknown)}")
    script = SFTArgs(
        variant=args.sft_variant,
        data=args.data,
        train_limit=args.train_limit,
        domain=args.train_domain,
        teacher=args.teacher,
        filter_solver=args.train_solver,
        instruction=args.instruction,
        eval_limit=0,
    )
    return train_sft(script, SFTConfig(**settings), model_args)


def train_dataset(args: PipelineArgs):
    """RL prompts: the decomposer's messages, plus the columns the reward plugins read."""
    from datasets import Dataset

    from rlrefine.data import load_split
    from rlrefine.format import decomposer_messages

    rows = load_split(args.data, "train", args.train_limit, args.train_domain)
    keep = ["id", "context", "question", "answer", "metric", "graph", "domain"]
    return Dataset.from_list(
        [
            {"prompt": decomposer_messages(r["context"], r["question"], args.instruction), **{k: r[k] for k in keep}}
            for r in rows
        ]
    )


def build_rewards(args: PipelineArgs, tokenizer) -> tuple[list, list[float]]:
    """Reward plugins named in the config, resolved in one place (``rlrefine.plugins``), each timed."""
    from rlrefine.plugins import resolve
    from rlrefine.solvers import shared_solver

    funcs, weights = [], []
    for spec in args.rewards:
        settings = dict(spec)
        name = settings.pop("name", None)
        if not name:
            raise ValueError(f"each reward needs a 'name'; got {spec}")
        weights.append(float(settings.pop("weight", 1.0)))
        if name in ("solver", "partial"):
            settings.setdefault("solver", args.train_solver)
        for spec in [settings.get("solver"), *settings.get("solvers", [])]:
            if spec:
                shared_solver(spec)  # a bad solver spec fails at start-up, and a neural one loads once
        funcs.append(timed(resolve(name, tokenizer=tokenizer, **settings)))
    return funcs, weights


REWARD_SECONDS: dict[str, float] = {}


def timed(func):
    """Count the seconds a reward takes, for the reward-overhead figure (share of the RL wall clock)."""
    import functools

    @functools.wraps(func)
    def wrapper(*a, **kw):
        start = time.perf_counter()
        try:
            return func(*a, **kw)
        finally:
            REWARD_SECONDS[func.__name__] = REWARD_SECONDS.get(func.__name__, 0.0) + time.perf_counter() - start

    return wrapper


def rl_stage(args: PipelineArgs, trl_args, model_args, start: Path, run: Path) -> Path:
    """Refine the decomposer with GRPO or RLOO through TRL, or with RFT, against the frozen solver."""
    from transformers import AutoModelForCausalLM

    from rlrefine.models import load_tokenizer
    from rlrefine.sft import TimeBudget, last_checkpoint, publish

    out = run / "rl"
    if (out / "config.json").exists():
        return out
    if args.algorithm == "rft":
        from rlrefine.rft import rft

        return rft(args, trl_args, start, out)
    from trl import GRPOTrainer, RLOOTrainer

    work = out.with_name("rl.work")
    tokenizer = load_tokenizer(start)
    funcs, weights = build_rewards(args, tokenizer)
    trl_args.reward_weights = weights
    trl_args.output_dir = str(work)
    trainer_class = {"grpo": GRPOTrainer, "rloo": RLOOTrainer}[args.algorithm]
    from trl import get_peft_config

    dtype = model_args.dtype if model_args.dtype not in (None, "auto") else "float32"
    trainer = trainer_class(
        model=AutoModelForCausalLM.from_pretrained(str(start), dtype=dtype),
        peft_config=get_peft_config(model_args),
        reward_funcs=funcs,
        args=trl_args,
        train_dataset=train_dataset(args),
        processing_class=tokenizer,
        callbacks=[TimeBudget(args.rl_minutes)],
    )
    resumed = last_checkpoint(work) if args.resume else None
    REWARD_SECONDS.clear()  # this run's reward time only, not an earlier run's in the same process
    began = time.perf_counter()
    trainer.train(resume_from_checkpoint=resumed)
    seconds = time.perf_counter() - began
    facts = {
        "algorithm": args.algorithm,
        "steps": trainer.state.global_step,
        "rl_minutes": seconds / 60,
        "num_processes": trainer.accelerator.num_processes,
        "resumed_from": resumed,
        "rewards": args.rewards,
        "reward_seconds": dict(REWARD_SECONDS),
        "reward_share": sum(REWARD_SECONDS.values()) / max(seconds, 1e-9),  # of this process's RL wall clock
    }
    card = (
        f"# rlrefine decomposer ({args.algorithm})\n\nRefined with TRL's {trainer_class.__name__} from `{start}` "
        f"against the frozen solver `{args.train_solver}`.\n\n```json\n{json.dumps(facts, indent=2)}\n```\n"
    )
    if trainer.accelerator.is_main_process:
        publish(trainer, out, card, {"training": facts, "log_history": trainer.state.log_history})
        shutil.rmtree(work, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return out


def eval_stage(args: PipelineArgs, run: Path, sft: Path, rl: Path, seed: int) -> dict:
    """Every decomposer (teacher, SFT, RL, with none/oracle for scale) x every default solver, plus pass@k."""
    from rlrefine.atomic import write_json, write_text
    from rlrefine.data import load_split
    from rlrefine.evaluate import evaluate, pass_at_k, report
    from rlrefine.models import ModelDecomposer
    from rlrefine.plots import plot_run
    from rlrefine.solvers import DEFAULT_SOLVERS

    rows = list(load_split(args.data, args.eval_split, args.eval_limit))
    solvers = args.eval_solvers or DEFAULT_SOLVERS
    students = {
        name: ModelDecomposer(str(path), instruction=args.instruction)
        for name, path in (("sft", sft), (f"rl-{args.algorithm}", rl))
    }
    for name, student in students.items():
        student.name = name
    results = evaluate(rows, ["none", "oracle", args.teacher, *students.values()], solvers, out=run / "eval")
    results["pass_at_k"] = {
        name: pass_at_k(student, rows, args.train_solver, args.pass_k, seed=seed) for name, student in students.items()
    }
    write_json(run / "results.json", results)
    write_text(run / "results.md", report(results))
    log_history = (
        json.loads((Path(rl) / "eval.json").read_text()).get("log_history", [])
        if Path(rl, "eval.json").exists()
        else []
    )
    plot_run(results, log_history, run / "report.png")
    return results


def main(argv: list[str] | None = None) -> dict:
    from accelerate import PartialState

    argv = list(sys.argv[1:] if argv is None else argv)
    args, trl_args, model_args = parse(argv)
    build_rewards(args, tokenizer=None)  # unknown rewards, settings and solvers fail now, before any training
    state = PartialState(cpu=trl_args.use_cpu)
    run = prepare_run_dir(argv, args, trl_args, model_args) if state.is_main_process else Path(args.run_dir)
    state.wait_for_everyone()
    sft = args.decomposer or sft_stage(args, model_args, run, trl_args.seed)
    rl = rl_stage(args, trl_args, model_args, sft, run)
    results = eval_stage(args, run, sft, rl, trl_args.seed) if state.is_main_process else {}
    state.wait_for_everyone()
    if state.is_main_process:
        print((run / "results.md").read_text())
    return results


if __name__ == "__main__":
    from rlrefine.cli import main as cli

    sys.exit(cli(["train", *sys.argv[1:]]))
