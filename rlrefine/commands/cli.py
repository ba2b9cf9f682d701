"""The ``rlrefine`` command: one sub-command per stage. Bad input (``UsageError``) and a backend that cannot serve
(``BackendError``) are one line on stderr and exit code 2; any other exception is a bug or a library's error and
keeps its traceback."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rlrefine.core.protocols import BackendError, UsageError
from rlrefine.core.settings import early_option, parse_config

COMMANDS = {
    "world": ("rlrefine.commands.cli:world_main", "build the embedded decomposition world and save it to disk"),
    "eval": ("rlrefine.evaluation.evaluate:main", "evaluate decomposers x solvers -> results.json, results.md"),
    "pretrain": ("rlrefine.training.pretrain:main", "pretrain the tiny base model on world text (a one-off)"),
    "sft": ("rlrefine.training.sft:main", "distill a decomposer (sd-t, sd-r, oracle) or a solver (onehop, se-t, se-a)"),
    "teach": (
        "rlrefine.training.teach:main",
        "teacher decompositions of a dataset with any backend (SD-T, SD-R with --solver)",
    ),
    "report": (
        "rlrefine.evaluation.report:main",
        "how finished runs' decomposers hold up across solvers and seeds (report.md, pictures)",
    ),
    "train": (
        "rlrefine.train:main",
        "the whole pipeline in one process (accelerate launch rlrefine/train.py for more)",
    ),
}


@dataclass
class WorldArgs:
    out: str = field(default="data/world", metadata={"help": "folder for DatasetDict.save_to_disk"})
    preset: str = field(default="default", metadata={"help": "default, small, hard, deep, shallow"})
    jsonl: bool = field(default=False, metadata={"help": "write OUT/{train,validation,test}.jsonl (editable files)"})


def world_main(argv: list[str] | None = None) -> None:
    from rlrefine.data.world import PRESETS, WorldConfig, generate, world_config

    preset = early_option(argv, "preset")[0] or "default"
    if preset not in PRESETS:
        raise UsageError(f"unknown world preset {preset!r}; valid: {', '.join(PRESETS)}")
    args, cfg = parse_config([WorldArgs, WorldConfig], argv, "rlrefine world", defaults=PRESETS[preset])
    generated = generate(world_config("default", **vars(cfg)))
    if args.jsonl:  # the JSONL schema of rlrefine.data: a starting point for your own problems
        for split, ds in generated.items():
            ds.to_json(Path(args.out) / f"{split}.jsonl", lines=True)
    else:
        generated.save_to_disk(args.out)
    print(f"saved {', '.join(f'{k}={len(v)}' for k, v in generated.items())} to {args.out}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        usage = "usage: rlrefine <command> [--config FILE.yaml] [flags]\n\n" + "\n".join(
            f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()
        )
        if argv and argv[0] not in ("-h", "--help"):
            print(f"rlrefine: unknown command {argv[0]!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        print(usage)
        return 0
    module, _, func = COMMANDS[argv[0]][0].partition(":")
    try:
        getattr(importlib.import_module(module), func)(argv[1:])
    except (UsageError, BackendError) as exc:
        print(f"rlrefine {argv[0]}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
