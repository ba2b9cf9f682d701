"""Engines: real models that answer chat conversations (``hf`` local transformers, ``vllm``, ``openai``-compatible
HTTP). They sit below the solvers and decomposers that prompt them and know nothing of either."""

from __future__ import annotations

import importlib

from rlrefine.protocols import ChatEngine
from rlrefine.registry import call

ENGINES = {"hf": "rlrefine.engines.hf:HFEngine", "vllm": "rlrefine.engines.vllm:VLLMEngine"}
ENGINES["openai"] = "rlrefine.engines.openai:OpenAIEngine"
MAX_TOKENS = {"solver": 512, "decomposer": 256}  # room for worked sub-answers; decompositions are short


def make_engine(backend: str, model: str, role: str, **options) -> ChatEngine:
    """An engine with ``options`` checked against its constructor (an unknown one names the valid ones).

    ``openai:MODEL@URL`` names a served model; ``openai:MODEL`` alone is the OpenAI API, key in $OPENAI_API_KEY."""
    if "api_key" in options:
        raise ValueError(
            "do not put an API key in a spec or config (they are logged and saved with runs); "
            "name the environment variable that holds it with api_key_env"
        )
    module, _, attr = ENGINES[backend].partition(":")
    engine = getattr(importlib.import_module(module), attr)
    if backend == "openai" and "@" in model and "base_url" not in options:
        model, _, options["base_url"] = model.rpartition("@")
    if backend == "openai" and "base_url" not in options:
        options.setdefault("api_key_env", "OPENAI_API_KEY")
    options.setdefault("max_tokens", MAX_TOKENS[role])
    return call(f"{backend} backend", engine, {"model": model, **options})
