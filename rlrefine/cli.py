"""The ``rlrefine`` command: one sub-command per stage. Bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from trl import TrlParser

COMMANDS = {
    "world": ("rlrefine.cli:world_main", "build the embedded decomposition world and save it to disk"),
    "eval": ("rlrefine.evaluate:main", "evaluate decomposers x solvers -> results.json, results.md"),
    "pretrain": ("rlrefine.pretrain:main", "pretrain the tiny base model on world text (a one-off)"),
    "sft": ("rlrefine.sft:main", "distill a decomposer (sd-t, sd-r, oracle) or a solver (onehop, se-t, se-a)"),
    "teach": ("rlrefine.teach:main", "teacher decompositions of a dataset with any backend (SD-T, SD-R with --solver)"),
    "train": (
        "rlrefine.train:main",
        "the whole pipeline in one process (accelerate launch rlrefine/train.py for more)",
    ),
}


class UsageError(ValueError):
    """Bad input from the user: printed as one line, exit code 2."""


def parse_config(dataclass_types, argv: list[str] | None, prog: str, defaults: dict | None = None) -> tuple:
    """Parse ``--config FILE.yaml`` plus flags into dataclasses (TRL's style); typos name the key."""
    types = dataclass_types if isinstance(dataclass_types, (list, tuple)) else [dataclass_types]
    parser = TrlParser(types, prog=prog)
    if defaults:
        parser.set_defaults_with_config(**defaults)
    try:
        parsed = parser.parse_args_and_config(argv)
    except ValueError as exc:
        if "Unknown arguments from config file" in str(exc):
            keys = [
                s[2:]
                for s in str(exc).split("[", 1)[1].split("]", 1)[0].replace("'", "").split(", ")
                if s.startswith("--")
            ]
            raise UsageError(f"unknown config key(s): {', '.join(keys)}") from None
        raise
    for obj in parsed:  # a flag reads like YAML: `--instruction null` is None, as `instruction: null` in a file
        hints = {k: str(v) for c in reversed(type(obj).__mro__) for k, v in getattr(c, "__annotations__", {}).items()}
        for name, hint in hints.items():
            if ("None" in hint or "Optional" in hint) and getattr(obj, name, None) in ("null", "None", "~"):
                setattr(obj, name, None)
    return parsed


def early_option(argv: list[str] | None, name: str) -> tuple[str | None, dict]:
    """An option that picks the other options' defaults, so it is read before them: ``--NAME``, else the
    ``--config`` file's ``NAME`` (None when neither says). Also returns the config file's mapping."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument(f"--{name}")
    known, _ = pre.parse_known_args(argv)
    file_config = (yaml.safe_load(Path(known.config).read_text()) if known.config else None) or {}
    return getattr(known, name) or file_config.get(name), file_config


@dataclass
class WorldArgs:
    out: str = field(default="data/world", metadata={"help": "folder for DatasetDict.save_to_disk"})
    preset: str = field(default="default", metadata={"help": "default, small, hard, deep, shallow"})


def world_main(argv: list[str] | None = None) -> None:
    from rlrefine.world import PRESETS, WorldConfig, generate, world_config

    preset = early_option(argv, "preset")[0] or "default"
    if preset not in PRESETS:
        raise UsageError(f"unknown world preset {preset!r}; valid: {', '.join(PRESETS)}")
    args, cfg = parse_config([WorldArgs, WorldConfig], argv, "rlrefine world", defaults=PRESETS[preset])
    generated = generate(world_config("default", **vars(cfg)))
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
    except (UsageError, ValueError, FileNotFoundError) as exc:
        print(f"rlrefine {argv[0]}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
