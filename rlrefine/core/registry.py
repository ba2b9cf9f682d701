"""One registry for rewards, solvers and decomposers: a spec becomes an object the same way for all three.

A spec is a string ``[LABEL=]NAME[:SETTINGS]`` or a mapping ``{name: NAME, label: LABEL, key: value, ...}`` (also
written as a YAML string). SETTINGS is ``key=value,...`` (values read as YAML scalars) or one value for the
factory's first parameter (``hf:Qwen/Qwen2.5-7B-Instruct``). NAME is a built-in (``BUILTIN``: lazy ``module:attr``
strings, nothing imported until used), an entry point in the group ``rlrefine.<kind>s``, ``package.module:attr``
or ``path/to/file.py:attr``. Two shorthands: a solver's bare settings are the symbolic solver's (``hops=1``), and
a path (text with a ``/``, or starting ``.`` or ``~``) is a trained ``model`` folder. What a spec means is decided by
its text alone, never by what exists on disk: ``hops=1`` is the symbolic solver wherever it is run, and a folder named
without a ``/`` (``mymodel``) is refused, showing how to name it (``./mymodel`` or ``model:mymodel``). The object found
is called with the settings, checked against its signature. Every bad spec raises ``UsageError``.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path

import yaml

from rlrefine.core.protocols import UsageError

BUILTIN: dict[str, dict[str, str]] = {
    "reward": {
        "solver": "rlrefine.rewards.solver:SolverCorrectness",
        "partial": "rlrefine.rewards.solver:PartialCredit",
        "multi_solver": "rlrefine.rewards.solver:MultiSolver",
        "format": "rlrefine.rewards.shape:format_validity",
        "cost": "rlrefine.rewards.shape:SubquestionCost",
        "token_cost": "rlrefine.rewards.shape:TokenCost",
        "cap": "rlrefine.rewards.shape:SubquestionCap",
    },
    "solver": {
        "symbolic": "rlrefine.solvers.symbolic:SymbolicSolver",
        "neural": "rlrefine.solvers.neural:neural",
        "model": "rlrefine.solvers.neural:from_folder",
        "mix": "rlrefine.solvers.mix:SolverMix",
    },
    "decomposer": {
        "none": "rlrefine.decomposers.simple:NoDecomposer",
        "oracle": "rlrefine.decomposers.simple:OracleDecomposer",
        "teacher": "rlrefine.decomposers.teacher:FlawedTeacher",
        "model": "rlrefine.decomposers.model:from_folder",
    },
    "dataset": {  # a function that returns a DatasetDict; its one setting follows the name (world:bench)
        "world": "rlrefine.data.world:dataset",
        "gsm8k": "rlrefine.data.real:gsm8k_dataset",
        "drop": "rlrefine.data.real:drop",
        "bamboogle": "rlrefine.data.real:bamboogle",
    },
    "algorithm": {name: f"rlrefine.training.algorithms:{name.upper()}" for name in ("grpo", "rloo", "ppo", "rft")},
    "engine": {  # a chat engine class (``.chat(conversations)``); by its name it is a solver or decomposer too
        "hf": "rlrefine.engines.hf:HFEngine",
        "vllm": "rlrefine.engines.vllm:VLLMEngine",
        "openai": "rlrefine.engines.openai:OpenAIEngine",
    },
}
ON_ENGINE = {  # the solver or decomposer that prompts an engine, whichever engine a spec names
    "solver": "rlrefine.solvers.model:on_engine",
    "decomposer": "rlrefine.decomposers.model:on_engine",
}
DEFAULT = {"solver": "symbolic"}  # whose settings a bare "key=value,..." spec holds
ALSO = {  # what else a name of this kind may be, for the message that lists the valid ones
    "solver": "a model folder",
    "decomposer": "a model folder",
    "dataset": "a folder of SPLIT.jsonl files, a mapping {train: FILE.jsonl, test: FILE.jsonl}, a .jsonl file (the "
    "test split) or a save_to_disk folder",
}
_LABEL = re.compile(r"^([A-Za-z_][\w.-]*)=(.+)$", re.S)
_TARGET = re.compile(r"^((?:[^:]+\.py|[A-Za-z_][\w.]*):[A-Za-z_]\w*)(?::(.*))?$", re.S)
_SETTING = re.compile(r"^\s*\w+\s*=")
_PATH = re.compile(r"^(?:\.{1,2}(?:/|$)|~(?:/|$)|[^:=]*/)")  # a path by its text: ./x, ../x, ~/x, runs/x/sft, /abs/x


_IS = {  # what a built object of each kind is
    "solver": lambda o: not inspect.isclass(o) and callable(getattr(o, "solve", None)),
    "decomposer": lambda o: not inspect.isclass(o) and callable(getattr(o, "decompose", None)),
    "reward": lambda o: not inspect.isclass(o) and bool({"completions", "completion_ids"} & set(_params(o))),
    "dataset": lambda o: isinstance(o, Mapping),
    "algorithm": lambda o: not inspect.isclass(o) and inspect.isclass(getattr(o, "config", None)),
}
_NEEDS = {
    "solver": "an object with .solve(rows, subquestions)",
    "decomposer": "an object with .decompose(rows)",
    "reward": "a function with TRL's reward signature: a 'completions' or 'completion_ids' parameter",
    "dataset": "a DatasetDict (a mapping of split name to Dataset)",
    "algorithm": "an rlrefine.training.algorithms.Algorithm (a TRL config class, a trainer class, defaults)",
}


def build(kind: str, spec: str | Mapping | object, **context) -> object:
    """A ready solver, decomposer or reward function from its spec; an object already built is returned as is."""
    if not isinstance(spec, (str, Mapping)):
        return spec
    name, settings = parse_spec(kind, spec)
    label = settings.pop("label", None)
    obj, where = _resolve(kind, name), f"{kind} {name!r}"
    if _IS[kind](obj):
        made = _bind(kind, where, obj, settings) if settings else obj
    elif callable(obj):
        made = call(where, obj, settings, **context)
        if not _IS[kind](made):
            raise UsageError(f"{where} gave {type(made).__name__}, not {_NEEDS[kind]}")
    else:
        raise UsageError(f"{where} is a {type(obj).__name__}, not {_NEEDS[kind]} nor a factory of one")
    if label is not None and kind != "reward":  # a reward's label is the name its wrapper logs
        made.name = str(label)
    return made


def _bind(kind: str, where: str, func, settings: dict):
    """A plain reward function's own keyword parameters, set from the config: a partial stays picklable, and TRL
    reads a partial's name and async-ness from the function inside."""
    data = ("prompts", "completions", "completion_ids")
    own = [n for n, p in _params(func).items() if n not in data and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(settings) - set(own)) if kind == "reward" else sorted(settings)
    if unknown:
        takes = f"its own keyword parameters ({', '.join(own)})" if kind == "reward" and own else "none"
        raise UsageError(
            f"{where} is a ready {kind}, not a factory: it takes settings {takes}, not {', '.join(unknown)}; to take "
            f"settings write a factory, a function or class that takes them and returns the {kind}"
        )
    return functools.partial(func, **{k: _typed(where, k, v, _params(func)[k]) for k, v in settings.items()})


def _groups(kind: str) -> list[str]:
    """The registry groups a name of this kind is looked up in: a solver or decomposer may also be named by an engine."""
    return [kind, "engine"] if kind in ON_ENGINE else [kind]


def known(kind: str) -> list[str]:
    return sorted(
        {n for g in _groups(kind) for n in (*BUILTIN[g], *(ep.name for ep in entry_points(group=f"rlrefine.{g}s")))}
    )


def parse_spec(kind: str, spec: str | Mapping) -> tuple[str, dict]:
    """(NAME, settings) of a spec; a label rides along as the setting ``label``."""
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            spec = yaml.safe_load(spec)
        except yaml.YAMLError as exc:
            raise UsageError(f"{kind} spec is not a valid YAML/JSON mapping ({str(exc).splitlines()[0]})") from None
    if isinstance(spec, Mapping):
        settings = dict(spec)
        if "backend" in settings:  # the older {backend: openai, model: ..., name: LABEL} form
            settings.setdefault("label", settings.pop("name", None))
            settings["name"] = settings.pop("backend")
        name = settings.pop("name", None)
        if not isinstance(name, str) or not name:
            raise UsageError(f"{kind} spec {dict(spec)} needs a 'name'; valid names: {', '.join(known(kind))}")
        return name, {k: v for k, v in settings.items() if not (k == "label" and v is None)}
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"{kind} spec must be a non-empty string or a mapping, got {spec!r}")
    text, settings = spec.strip(), {}
    label = _LABEL.match(text)
    if label and _name(kind, label.group(2)):  # "sft=runs/x/sft"; but "hops=1" is the symbolic solver's setting
        settings["label"], text = label.groups()
    name, args = _name(kind, text) or (None, None)
    if name is None:
        raise UsageError(_unknown(kind, text))
    parts = args.split(",")
    if args and all(_SETTING.match(p) for p in parts):
        settings.update({k.strip(): _scalar(v) for k, v in (p.split("=", 1) for p in parts)})
    elif args and _SETTING.match(parts[0]):  # "hops=1,noise": settings are key=value, each of them
        bad = next(p for p in parts if not _SETTING.match(p))
        raise UsageError(f"{kind} spec {spec!r}: settings are key=value separated by commas; {bad.strip()!r} is not")
    elif args:
        settings[""] = args  # the factory's first parameter
    return name, settings


def _name(kind: str, text: str) -> tuple[str, str] | None:
    """(NAME, the text of its settings) when ``text`` names something of this kind."""
    head, _, args = text.partition(":")
    if kind in DEFAULT and _SETTING.match(text):
        return DEFAULT[kind], text
    if head in known(kind):
        return head, args
    if target := _TARGET.match(text):
        return target.group(1), target.group(2) or ""
    if _PATH.match(text) and "model" in BUILTIN[kind]:
        return "model", text
    return None


def _scalar(text: str) -> object:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text.strip()
    return value if isinstance(value, (int, float, bool, str, type(None))) else text.strip()


def _unknown(kind: str, name: str) -> str:
    if "model" in BUILTIN[kind] and Path(name).is_dir():  # the older form: a folder named without a path
        return f"{kind} {name!r} is a folder: name it as one, ./{name} or model:{name}"
    close = difflib.get_close_matches(name, known(kind), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"unknown {kind} {name!r}; {hint}valid: {', '.join(known(kind))}, 'package.module:attr' or 'file.py:attr'"
        + (f" (or {ALSO[kind]})" if kind in ALSO else "")
    )


def _resolve(kind: str, name: str) -> object:
    """What NAME builds: an engine class named where a solver or decomposer is wanted becomes the model solver or
    decomposer that prompts it (``ON_ENGINE``), so a new engine is one class, by name, path or entry point."""
    obj = find(kind, name)
    if kind in ON_ENGINE and inspect.isclass(obj) and callable(getattr(obj, "chat", None)):
        return functools.partial(find(kind, ON_ENGINE[kind]), obj)
    return obj


def find(kind: str, name: str) -> object:
    """The object NAME points to, imported now."""
    target = next((BUILTIN[g][name] for g in _groups(kind) if name in BUILTIN[g]), name)
    module, sep, attr = target.rpartition(":")
    if sep and module.endswith(".py"):
        return _attr(_load_file(module), attr, module)
    if sep and module:
        try:
            loaded = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is one line naming the module
            raise UsageError(f"{kind} {name!r}: cannot import {module!r}: {type(exc).__name__}: {exc}") from None
        return _attr(loaded, attr, module)
    for group in _groups(kind):
        for ep in entry_points(group=f"rlrefine.{group}s", name=name):
            return ep.load()
    raise UsageError(_unknown(kind, name))


def _load_file(path: str) -> object:
    """A user's plugin file as a module; an error in it is one line naming the file, and a fixed file loads afresh."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"plugin file {path!r} not found")
    name = f"rlrefine_plugin_{abs(hash(str(file.resolve())))}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, file)
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)  # the user's own plugin file, named in their config
        except Exception as exc:  # noqa: BLE001
            del sys.modules[name]
            raise UsageError(f"plugin file {path}: {type(exc).__name__}: {exc}") from None
    return sys.modules[name]


def _attr(module: object, attr: str, where: str) -> object:
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise UsageError(f"{where} has no {attr!r}; it defines: {', '.join(public)}")
    return getattr(module, attr)


def _params(func: object) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return {}


def call(where: str, func, settings: dict, **context) -> object:
    """``func(**settings)`` with the settings checked against its signature; ``context`` values (a policy's
    ``tokenizer``) are passed only to a function that asks for them by name."""
    return func(**_checked(where, func, settings, context))


def check(kind: str, spec: str | Mapping) -> tuple[str, ...]:
    """Resolve a spec and check its settings without building it (no model loads); returns the dataset columns
    it requires (``requires``, e.g. the world's ``graph``)."""
    name, settings = parse_spec(kind, spec)
    settings.pop("label", None)
    obj = _resolve(kind, name)
    if not _IS[kind](obj):
        _checked(f"{kind} {name!r}", obj, settings, {})
    return tuple(getattr(obj, "requires", ()))


def _checked(where: str, func, settings: dict, context: dict) -> dict:
    params = _params(func)
    settings = dict(settings)
    if "" in settings:
        first = next((n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)), None)
        settings[first or "?"] = settings.pop("")
    open_ended = any(p.kind == p.VAR_KEYWORD for p in params.values())
    unknown = sorted(k for k in settings if k not in params and not open_ended)
    if unknown:
        valid = [n for n, p in params.items() if n not in context and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise UsageError(f"{where}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(valid) or 'none'}")
    for key, value in settings.items():
        settings[key] = _typed(where, key, value, params.get(key))
    settings.update({k: v for k, v in context.items() if k in params and k not in settings})
    required = [
        n for n, p in params.items() if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if missing := [n for n in required if n not in settings]:
        raise UsageError(f"{where}: missing setting(s) {', '.join(missing)}")
    return settings


def _typed(where: str, key: str, value: object, param: inspect.Parameter | None) -> object:
    """A number given as text ("hops=x") fails naming the setting, as does a fraction or a yes/no where a whole number
    is wanted ("hops=1.5"); an int where a float is wanted is fine."""
    hint = str(param.annotation) if param is not None and param.annotation is not param.empty else ""
    kinds = set(re.findall(r"\b(int|float|str|bool)\b", hint))
    if not kinds or "str" in kinds:
        return value
    if isinstance(value, bool) and "bool" not in kinds or isinstance(value, float) and kinds == {"int"}:
        raise UsageError(f"{where}: {key} must be {' or '.join(sorted(kinds))}, got {value!r}")
    if not isinstance(value, str):
        return value
    for kind in ("int", "float"):
        if kind in kinds:
            try:
                return {"int": int, "float": float}[kind](value)
            except ValueError:
                pass
    raise UsageError(f"{where}: {key} must be {' or '.join(sorted(kinds))}, got {value!r}")
