"""Settings from ``--config FILE.yaml`` plus flags into dataclasses (TRL's ``TrlParser``), for every command.

An unknown key in the file or on the command line is one line naming it (``UsageError``, exit code 2), flags are
spelled in full (no prefix matching), and ``--key null`` reads as YAML.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from rlrefine.core.protocols import UsageError


def parse_config(
    dataclass_types, argv: list[str] | None, prog: str, defaults: dict | None = None, elsewhere: dict | None = None
) -> tuple:
    """Parse ``--config FILE.yaml`` plus flags into dataclasses (TRL's style); typos name the key, and a key that
    belongs to other settings says whose (``elsewhere``: key -> "a setting of ...")."""
    from trl import TrlParser

    types = dataclass_types if isinstance(dataclass_types, (list, tuple)) else [dataclass_types]
    parser = TrlParser(types, prog=prog, allow_abbrev=False)
    if defaults:
        parser.set_defaults_with_config(**defaults)
    *parsed, in_file, on_line = parser.parse_args_and_config(
        argv, return_remaining_strings=True, separate_remaining_strings=True
    )

    def named(key: str) -> str:
        where = (elsewhere or {}).get(key.lstrip("-").split("=")[0])
        return f"{key} ({where})" if where else key

    if in_file:
        raise UsageError(f"unknown config key(s): {', '.join(named(k[2:]) for k in in_file[::2])}")
    if on_line:
        flags = [a for a in on_line if a.startswith("-")] or on_line
        raise UsageError(f"unknown flag(s) or stray value(s): {' '.join(map(named, flags))}; see {prog} --help")
    for obj in parsed:  # a flag reads like YAML: `--instruction null` is None, as `instruction: null` in a file
        hints = {k: str(v) for c in reversed(type(obj).__mro__) for k, v in getattr(c, "__annotations__", {}).items()}
        for name, hint in hints.items():
            if ("None" in hint or "Optional" in hint) and getattr(obj, name, None) in ("null", "None", "~"):
                setattr(obj, name, None)
    return tuple(parsed)


def early_option(argv: list[str] | None, name: str) -> tuple[str | None, dict]:
    """An option that picks the other options' defaults, so it is read before them: ``--NAME``, else the
    ``--config`` file's ``NAME`` (None when neither says). Also returns the config file's mapping."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    pre.add_argument(f"--{name}")
    known, _ = pre.parse_known_args(argv)
    file_config = (yaml.safe_load(Path(known.config).read_text()) if known.config else None) or {}
    return getattr(known, name) or file_config.get(name), file_config


def inline(key: str, text: str, kind: type):
    """A mapping or list given on the command line, as YAML (JSON is YAML too)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"--{key}: not valid YAML/JSON ({str(exc).splitlines()[0]}): {text}") from None
    if not isinstance(value, kind):
        raise UsageError(f"--{key}: expected a YAML/JSON {kind.__name__}, got {text!r}")
    return value
