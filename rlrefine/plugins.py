"""Reward resolution: the one place that turns a reward named in a config into a callable.

A reward is found by built-in name (``solver``), ``package.module:function``, ``path/to/file.py:function``,
or an installed package's entry point in the group ``rlrefine.rewards``. The object found is either a reward
function with TRL's signature ``f(prompts, completions, completion_ids, **kwargs) -> list[float | None]``
or a factory that returns one; factories get the keyword arguments from the config (and the policy's
``tokenizer`` if they ask for it by that name).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

GROUP = "rlrefine.rewards"
BUILTIN = {
    "solver": "rewards.solver:solver_correctness",
    "partial": "rewards.solver:partial_credit",
    "multi_solver": "rewards.solver:multi_solver",
    "format": "rewards.shape:format_validity",
    "cost": "rewards.shape:subquestion_cost",
    "token_cost": "rewards.shape:token_cost",
    "cap": "rewards.shape:subquestion_cap",
}


def known_rewards() -> list[str]:
    return sorted({*BUILTIN, *(ep.name for ep in entry_points(group=GROUP))})


def _load_file(path: str, attr: str) -> object:
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"reward plugin file {path!r} not found")
    name = f"rlrefine_plugin_{abs(hash(str(file.resolve())))}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)  # the user's own plugin file, named in their config
        except BaseException:
            del sys.modules[name]  # a fixed file must be loaded afresh, not found half-run
            raise
    return _attr(sys.modules[name], attr, path)


def _attr(module: object, attr: str, where: str) -> object:
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ValueError(f"{where} has no {attr!r}; it defines: {', '.join(public)}")
    return getattr(module, attr)


def find(name: str) -> object:
    """The object a reward name points to (not yet called)."""
    target = BUILTIN.get(name, name)
    module, sep, attr = target.rpartition(":")
    if sep and module.endswith(".py"):
        return _load_file(module, attr)
    if sep and module:
        try:
            return _attr(importlib.import_module(module), attr, module)
        except ModuleNotFoundError as exc:
            raise ValueError(f"reward {name!r}: cannot import {module!r} ({exc})") from None
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            return ep.load()
    raise ValueError(
        f"unknown reward {name!r}; valid: {', '.join(known_rewards())}, 'module:function' or 'file.py:function'"
    )


def is_reward_function(obj: object) -> bool:
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False
    return "completions" in params


def resolve(name: str, tokenizer: object = None, **kwargs) -> Callable:
    """A ready reward function for ``name``; factories are called with ``kwargs`` from the config."""
    obj = find(name)
    if is_reward_function(obj):
        if kwargs:
            raise ValueError(f"reward {name!r} is a plain reward function and takes no settings; got {sorted(kwargs)}")
        return obj
    if not callable(obj):
        raise ValueError(f"reward {name!r} is neither a reward function nor a factory")
    params = inspect.signature(obj).parameters
    if "tokenizer" in params:
        kwargs["tokenizer"] = tokenizer
    unknown = [k for k in kwargs if k not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values())]
    if unknown:
        valid = [p for p in params if p != "tokenizer"]
        raise ValueError(f"reward {name!r}: unknown setting(s) {unknown}; valid: {', '.join(valid)}")
    func = obj(**kwargs)
    if not is_reward_function(func):
        raise ValueError(
            f"reward factory {name!r} did not return a reward function (it needs a 'completions' parameter)"
        )
    return func


def named(func: Callable, name: str) -> Callable:
    """Give a closure the name TRL logs it under (``rewards/<name>/mean``)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    wrapper.__name__ = wrapper.__qualname__ = name
    return wrapper
