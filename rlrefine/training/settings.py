"""The pipeline's settings (``rlrefine/train.py``): ``PipelineArgs``, our defaults over TRL's per algorithm, what a
run folder's ``config.yaml`` holds, and the check of every name a run will use before any work starts."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields

import yaml

from rlrefine.core.protocols import UsageError
from rlrefine.core.settings import early_option, inline, parse_config

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
}


def algorithm_of(name: str):
    """The algorithm a name gives (``rlrefine.training.algorithms``, or a plugin): an unknown one lists the valid ones."""
    from rlrefine.core.registry import build

    return build("algorithm", name)


def defaults_for(algorithm: str) -> dict:
    """Our TRL defaults for an algorithm: the shared ones its config class has fields for (RFT's rounds are SFT: no
    generation settings), then the algorithm's own."""
    from rlrefine.training.trainers import TRAINER_DEFAULTS

    chosen = algorithm_of(algorithm)
    valid = chosen.config.__dataclass_fields__
    return {**{k: v for k, v in {**RL_DEFAULTS, **TRAINER_DEFAULTS}.items() if k in valid}, **chosen.defaults}


@dataclass
class PipelineArgs:
    """The pipeline's own settings (``rlrefine/train.py``); TRL's trainer settings are parsed next to these."""

    data: str = field(default="world", metadata={"help": "dataset name or path (train / validation / test splits)"})
    run_dir: str = field(default="runs/default", metadata={"help": "everything this run writes"})
    algorithm: str = field(
        default="grpo", metadata={"help": "grpo, rloo, ppo, rft or a plugin (rlrefine.training.algorithms)"}
    )
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
    eval_modes: list[str] = field(
        default_factory=lambda: ["static"],
        metadata={"help": "static, dynamic or both: dynamic cells are extra rows, 'NAME (dynamic)'"},
    )
    pass_k: int = field(default=8, metadata={"help": "pass@k of SFT and RL decomposers with the training solver"})
    eval_cache: str | None = field(
        default=None, metadata={"help": "an evaluation cache shared by runs (default: RUN/eval); cells are reused"}
    )
    resume: bool = field(default=False, metadata={"help": "continue a killed run in run_dir"})
    overwrite: bool = field(default=False, metadata={"help": "delete run_dir and start over"})

    def __post_init__(self) -> None:
        if not isinstance(self.sft, dict):
            self.sft = inline("sft", self.sft, dict) if self.sft else {}
        if self.rewards is None:
            self.rewards = [dict(r) for r in DEFAULT_REWARDS]
        elif isinstance(self.rewards, str):
            self.rewards = inline("rewards", self.rewards, list)
        algorithm_of(self.algorithm)  # an unknown one fails here, listing the valid ones


def trl_config_class(algorithm: str):
    return algorithm_of(algorithm).config


def _sources(argv: list[str]) -> tuple[str, dict, dict]:
    """The algorithm, the ``--config`` file's mapping and our TRL defaults for that algorithm."""
    algorithm, file_config = early_option(argv, "algorithm")
    algorithm = algorithm or "grpo"
    return algorithm, file_config, defaults_for(algorithm)


def parse_pipeline(argv: list[str] | None):
    """Pipeline settings plus the TRL config of the chosen algorithm, from ``--config`` and flags."""
    from trl import ModelConfig

    argv = list(sys.argv[1:] if argv is None else argv)
    algorithm, _, defaults = _sources(argv)
    return parse_config([PipelineArgs, trl_config_class(algorithm), ModelConfig], argv, "rlrefine train", defaults)


def run_config(argv: list[str], args: PipelineArgs, trl_args, model_args) -> dict:
    """What ``--config`` reads back to repeat the run: every pipeline setting, plus the TRL and model settings
    that the config file, the flags or our defaults chose (not TRL's hundred-odd untouched or derived ones)."""
    _, file_config, defaults = _sources(argv)
    chosen = {*file_config, *defaults, *(a[2:].split("=")[0] for a in argv if a.startswith("--"))}
    how = ("overwrite", "resume", "eval_cache")  # how, not what, to run
    config = {k: v for k, v in asdict(args).items() if k not in how}
    for given in (trl_args.to_dict(), asdict(model_args)):
        config.update({k: v for k, v in given.items() if k in chosen and k not in config and k != "output_dir"})
    return config


def _defaults(algorithm: str) -> dict:
    """Every setting's value when nothing chose it: the dataclasses' defaults, then ours."""
    from trl import ModelConfig

    values = {}
    for cls in (PipelineArgs, trl_config_class(algorithm), ModelConfig):
        for f in fields(cls):
            factory = f.default_factory if f.default_factory is not MISSING else lambda: None
            values[f.name] = f.default if f.default is not MISSING else factory()
    return {**values, **defaults_for(algorithm)}


def changed_settings(saved: dict, argv: list[str], args: PipelineArgs, trl_args, model_args) -> list[str]:
    """The settings of this launch that differ from a run folder's ``config.yaml`` (a resume must not change what
    is trained, or the folder would describe models it does not hold)."""
    now = {**trl_args.to_dict(), **asdict(model_args), **asdict(args)}
    defaults = _defaults(args.algorithm)
    chosen = set(saved) | set(run_config(argv, args, trl_args, model_args))

    def plain(value):  # as YAML writes and reads it back: tuples as lists, enums as their values
        return yaml.safe_load(yaml.safe_dump(value))

    return sorted(k for k in chosen if plain(saved.get(k, defaults.get(k))) != plain(now.get(k)))


def refuse_clashes(args: PipelineArgs, trl_args) -> None:
    """Refuse, before any work, what would break on the GPUs: PPO under DeepSpeed or FSDP (its critic is a second model
    the engine does not shard), a solver or teacher served on the port GRPO's vLLM server mode talks to
    (``vllm_server_port``), and an in-process ``vllm:`` engine (each takes its share of GPU memory at start-up and
    keeps it) beside TRL's colocated vLLM, on several processes (every rank would build it on its GPU), or next to a
    second one."""
    from rlrefine.core.registry import parse_spec

    sharded = [k for k in ("DEEPSPEED", "FSDP") if os.environ.get(f"ACCELERATE_USE_{k}", "").lower() == "true"]
    sharded += [k for k in ("deepspeed", "fsdp") if getattr(trl_args, k, None)]
    if args.algorithm == "ppo" and sharded:  # the critic is a second model outside the engine's sharding
        raise UsageError(
            f"PPO's critic is not prepared for {sharded[0].upper()} (zero2/zero3/fsdp2 accelerate configs): run PPO "
            "with configs/accelerate/multi_gpu.yaml (DDP), or GRPO/RLOO under ZeRO or FSDP"
        )

    named = [("teacher", args.teacher), ("train_solver", args.train_solver)]
    named += [("eval_solvers", s) for s in args.eval_solvers or []]
    named += [("rewards", r.get("solver", r.get("solvers"))) for r in args.rewards if isinstance(r, dict)]
    named = [(where, spec) for where, spec in named for spec in (spec if isinstance(spec, list) else [spec]) if spec]
    trl_vllm = getattr(trl_args, "vllm_mode", None) if getattr(trl_args, "use_vllm", False) else None
    if trl_vllm == "server":
        port = getattr(trl_args, "vllm_server_port", None)
        for where, spec in named:
            if f":{port}/" in json.dumps(spec):
                raise UsageError(
                    f"{where} is served on port {port}, which GRPO's vLLM server mode uses (vllm_server_port): serve "
                    f"it on another port, or set --vllm_server_port to the port of `trl vllm-serve`"
                )
    engines = {}
    for where, spec in named:
        name, settings = parse_spec("solver" if where != "teacher" else "decomposer", spec)
        if name == "vllm":
            engines.setdefault(json.dumps(settings, sort_keys=True, default=str), where)
    if not engines:
        return
    why = (
        "beside TRL's colocated vLLM" if trl_vllm == "colocate"
        else "on several processes" if int(os.environ.get("WORLD_SIZE", "1")) > 1
        else "next to another vllm: engine" if len(engines) > 1
        else None
    )  # fmt: skip
    if why:
        raise UsageError(
            f"an in-process vllm: engine ({', '.join(sorted(set(engines.values())))}) {why} would claim the same GPU "
            f"memory: serve the model (vllm serve MODEL --port N) and name it as openai:MODEL@http://127.0.0.1:N/v1"
        )


def preflight(args: PipelineArgs) -> None:
    """Everything a run will use, resolved against the data it will meet before any work starts: an unknown eval
    solver or a symbolic solver on GSM8K fails in seconds, not after SFT and RL."""
    from trl import SFTConfig

    from rlrefine.core.registry import check
    from rlrefine.data import load_splits, require
    from rlrefine.evaluation.dynamic import check_modes
    from rlrefine.solvers import DEFAULT_SOLVERS, shared_solver
    from rlrefine.training.distill import DECOMPOSER_VARIANTS

    check_modes(args.eval_modes)
    unknown = sorted(set(args.sft) - set(SFTConfig.__dataclass_fields__))
    if unknown:
        raise UsageError(f"unknown sft setting(s): {', '.join(unknown)}")
    if args.sft_variant not in DECOMPOSER_VARIANTS:
        raise UsageError(f"unknown sft_variant {args.sft_variant!r}; valid: {', '.join(DECOMPOSER_VARIANTS)}")
    splits = load_splits(args.data)
    for split in ("train", args.eval_split):
        if split not in splits:
            raise UsageError(f"dataset {args.data!r} has no split {split!r}; it has: {', '.join(splits)}")
    domains = sorted(set(splits["train"]["domain"]))
    if args.train_domain and args.train_domain not in domains:
        raise UsageError(f"dataset {args.data!r} has no domain {args.train_domain!r}; valid: {', '.join(domains)}")
    rows = list(splits[args.eval_split].select(range(min(50, len(splits[args.eval_split])))))
    require(f"decomposer {args.teacher!r}", check("decomposer", args.teacher), rows, repr(args.data))
    solvers = list(dict.fromkeys([args.train_solver, *(args.eval_solvers or DEFAULT_SOLVERS)]))
    for spec in solvers:  # every name first, before any model loads
        require(f"solver {spec!r}", check("solver", spec), rows, repr(args.data))
    for spec in solvers:  # built once: the rewards and the evaluation use these
        require(f"solver {spec!r}", getattr(shared_solver(spec), "requires", ()), rows, repr(args.data))
