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


def algorithm_of(name: str):
    """The algorithm a name gives (``rlrefine.training.algorithms``, or a plugin): an unknown one lists the valid ones."""
    from rlrefine.core.registry import build

    return build("algorithm", name)


def defaults_for(algorithm: str) -> dict:
    """Our TRL defaults for an algorithm (``Algorithm.trl_defaults``, beside the algorithms)."""
    return algorithm_of(algorithm).trl_defaults()


ROLLOUTS = ("static", "dynamic")  # how the decomposer writes in training: all sub-questions at once, or in a dialogue


def check_rollout(rollout: str) -> str:
    """The rollout named, or one line naming the valid ones."""
    if rollout not in ROLLOUTS:
        raise UsageError(f"unknown rollout {rollout!r}; valid: {', '.join(ROLLOUTS)}")
    return rollout


def subquestion_cap(rewards: list) -> int | None:
    """The run's cap on sub-questions, as its rewards state it: the format reward's ``cap`` (the paper's three unless
    it says otherwise; ``cap: null`` none), and no cap when no reward limits the count. RFT's filter and the dialogues
    of ``--rollout dynamic`` (training and evaluation) follow it, so every algorithm meets the limit the rewards set, and
    the paper's instruction (``instruction: null``) asks for it."""
    from rlrefine.core.format import MAX_SUBQUESTIONS
    from rlrefine.core.registry import parse_spec

    for spec in rewards:
        name, settings = parse_spec("reward", spec)
        if name == "format":
            return settings.get("cap", MAX_SUBQUESTIONS)
    return None


# The pipeline's settings, one dataclass per concern; ``PipelineArgs`` composes them (as TRL's scripts compose
# ``ScriptArguments``, the trainer's config and ``ModelConfig``), and every stage reads the concerns it needs.


@dataclass
class DataArgs:
    """Which problems training reads (``rlrefine sft`` and every stage of ``train.py``)."""

    data: str = field(default="world", metadata={"help": "dataset name or path (train / validation / test splits)"})
    train_limit: int | None = field(default=None, metadata={"help": "use the first N training problems"})
    train_domain: str | None = field(default=None, metadata={"help": "train on one domain only (transfer ablation)"})


@dataclass
class TeacherArgs:
    """What the student learns from, and the prompt it is trained and run with."""

    teacher: str = field(default="teacher", metadata={"help": "teacher decomposer spec"})
    instruction: str | None = field(
        default="",
        metadata={
            "help": "the decomposer prompt's instruction: '' none (tiny models), null the paper's (its cap: the run's)"
        },
    )


@dataclass
class DistillStage:
    """The SFT stage of the pipeline (``rlrefine sft`` has the same through ``SFTArgs``)."""

    base_model: str = field(default="base", metadata={"help": "what the SFT student starts from"})
    sft_variant: str = field(default="sd-t", metadata={"help": "sd-t, sd-r or oracle"})
    sft: str | None = field(default=None, metadata={"help": "SFTConfig overrides for the SFT stage (a YAML mapping)"})


@dataclass
class RLStage:
    """The RL stage: the algorithm's own settings are its TRL config's (``RFTConfig``'s rounds, ``PPOConfig``'s
    critic), these are what every algorithm shares."""

    algorithm: str = field(
        default="grpo", metadata={"help": "grpo, rloo, ppo, rft or a plugin (rlrefine.training.algorithms)"}
    )
    decomposer: str | None = field(default=None, metadata={"help": "start RL from this decomposer; skips SFT"})
    train_solver: str = field(
        default="hops=1",
        metadata={"help": "the frozen solver whose correctness is the reward ({name: mix, solvers: [...]}: one each)"},
    )
    rollout: str = field(
        default="static",
        metadata={"help": "static: all sub-questions at once; dynamic: a dialogue with the solver (SFT data and RL)"},
    )
    rewards: str | None = field(
        default=None, metadata={"help": "reward plugins: a YAML list (on the command line too: '[{name: solver}]')"}
    )
    rl_minutes: float | None = field(default=None, metadata={"help": "wall-clock budget of the RL stage"})


@dataclass
class EvalStage:
    """The final evaluation: ``rlrefine eval``'s settings (``EvalArgs``) under an ``eval_`` prefix, plus pass@k."""

    eval_split: str = field(default="test")
    eval_limit: int | None = field(default=1000)
    eval_solvers: list[str] | None = field(default=None, metadata={"help": "default: the default solver set"})
    eval_modes: list[str] = field(
        default_factory=lambda: ["static"],
        metadata={"help": "static, dynamic or both: dynamic cells are extra rows, 'NAME (dynamic)'"},
    )
    pass_k: int = field(
        default=8, metadata={"help": "pass@k of SFT and RL decomposers with the training solver (0: none)"}
    )
    eval_cache: str | None = field(
        default=None, metadata={"help": "an evaluation cache shared by runs (default: RUN/eval); cells are reused"}
    )


@dataclass
class RunArgs:
    """Where the run lives, and what to do with one that is there."""

    run_dir: str = field(default="runs/default", metadata={"help": "everything this run writes"})
    resume: bool = field(default=False, metadata={"help": "continue a killed run in run_dir"})
    overwrite: bool = field(default=False, metadata={"help": "delete run_dir and start over"})


@dataclass
class PipelineArgs(RunArgs, EvalStage, RLStage, DistillStage, TeacherArgs, DataArgs):
    """The pipeline's own settings (``rlrefine/train.py``), one flat set of flags over the concerns above; TRL's
    trainer settings are parsed next to these."""

    def __post_init__(self) -> None:
        if not isinstance(self.sft, dict):
            self.sft = inline("sft", self.sft, dict) if self.sft else {}
        if self.rewards is None:
            self.rewards = [dict(r) for r in DEFAULT_REWARDS]
        elif isinstance(self.rewards, str):
            self.rewards = inline("rewards", self.rewards, list)
        if self.instruction is None:  # the paper's, asking for at most as many sub-questions as the run allows
            from rlrefine.core.format import decomposer_instruction

            self.instruction = decomposer_instruction(subquestion_cap(self.rewards))
        algorithm = algorithm_of(self.algorithm)  # an unknown one fails here, listing the valid ones
        if check_rollout(self.rollout) == "dynamic":
            if not algorithm.dialogue:
                from rlrefine.core.registry import known

                able = [n for n in known("algorithm") if algorithm_of(n).dialogue]
                raise UsageError(
                    f"rollout: dynamic needs an algorithm that trains in a dialogue (TRL's rollout_func): "
                    f"{' or '.join(able)}, not {self.algorithm}"
                )
            self.eval_modes = list(dict.fromkeys([*self.eval_modes, "dynamic"]))  # how the decomposer was trained


def concern(args, cls) -> dict:
    """The settings of one concern (a dataclass above) out of a composed object, to hand to what takes that concern."""
    return {f.name: getattr(args, f.name) for f in fields(cls)}


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

    from rlrefine.core.registry import known

    argv = list(sys.argv[1:] if argv is None else argv)
    algorithm, _, defaults = _sources(argv)
    mine = trl_config_class(algorithm).__dataclass_fields__
    elsewhere = {}  # another algorithm's own settings (RFT's rounds under --algorithm grpo) say whose they are
    for other in reversed(known("algorithm")):
        for key in trl_config_class(other).__dataclass_fields__.keys() - mine:
            elsewhere[key] = f"a setting of --algorithm {other}"
    classes = [PipelineArgs, trl_config_class(algorithm), ModelConfig]
    return parse_config(classes, argv, "rlrefine train", defaults, elsewhere)


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
    the engine does not shard), dialogue rollouts with vLLM (not built), a solver or teacher served on the port GRPO's
    vLLM server mode talks to (``vllm_server_port``), and an in-process ``vllm:`` engine (each takes its share of GPU memory at start-up and
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

    if args.rollout == "dynamic" and getattr(trl_args, "use_vllm", False):  # each turn is generated by transformers
        raise UsageError("rollout: dynamic generates each turn with transformers, not vLLM: set use_vllm false")
    if args.rollout == "dynamic":
        from rlrefine.training.dialogue import DialogueRLOOTrainer, check_rloo

        if issubclass(algorithm_of(args.algorithm).dialogue, DialogueRLOOTrainer):
            check_rloo(trl_args)

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
