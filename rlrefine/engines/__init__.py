"""Engines: real models that answer chat conversations (``hf`` local transformers, ``vllm``, ``openai``-compatible
HTTP). They sit below the solvers and decomposers that prompt them and know nothing of either."""

from __future__ import annotations

import inspect

from rlrefine.core.protocols import ChatEngine, UsageError
from rlrefine.core.registry import call, find

MAX_TOKENS = {"solver": 512, "decomposer": 256}  # room for worked sub-answers; decompositions are short


def make_engine(engine: str | type, model: str, role: str, **options) -> ChatEngine:
    """An engine, by its name in the registry (``hf``, ``vllm``, ``openai``, an entry point in ``rlrefine.engines``)
    or as a class, with ``options`` checked against its constructor (an unknown one names the valid ones)."""
    if "api_key" in options:
        raise UsageError(
            "do not put an API key in a spec or config (they are logged and saved with runs); "
            "name the environment variable that holds it with api_key_env"
        )
    cls = find("engine", engine) if isinstance(engine, str) else engine
    if "max_tokens" in inspect.signature(cls).parameters:
        options.setdefault("max_tokens", MAX_TOKENS[role])
    where = f"{engine if isinstance(engine, str) else getattr(cls, 'backend', cls.__name__)} backend"
    return call(where, cls, {"model": model, **options})
