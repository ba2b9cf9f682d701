"""vLLM's offline engine on the local GPUs (``pip install 'rlrefine[vllm]'``; vLLM is imported only when used)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rlrefine.core.protocols import BackendError, Completion

_VLLM_ENGINES: dict[str, Any] = {}  # one engine per model and settings per process: GPU memory is loaded once


class VLLMEngine:
    """vLLM's offline engine: continuous batching on the local GPUs, chat template applied by vLLM."""

    backend = "vllm"

    def __init__(
        self,
        model: str,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int = 0,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        llm_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import vllm
        except ImportError:
            raise BackendError("the vllm backend needs vLLM on a CUDA machine: pip install 'rlrefine[vllm]'") from None
        settings = {
            "model": model,
            "dtype": dtype,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_model_len": max_model_len,
            "seed": seed,
            **dict(llm_kwargs or {}),
        }
        key = json.dumps(settings, sort_keys=True, default=str)
        if key not in _VLLM_ENGINES:
            _VLLM_ENGINES[key] = vllm.LLM(**{k: v for k, v in settings.items() if v is not None})
        self.llm = _VLLM_ENGINES[key]
        # the model's generation_config applies as in the hf engine (transformers' generate reads it): its
        # repetition_penalty and min_p; temperature and the length are the spec's, top_p and top_k left open
        defaults = self.llm.get_default_sampling_params()
        model_own = {k: getattr(defaults, k) for k in ("repetition_penalty", "min_p") if hasattr(defaults, k)}
        self.sampling = vllm.SamplingParams(**model_own, temperature=temperature, max_tokens=max_tokens, seed=seed)
        self.name = f"vllm:{model}"
        self.version = f"vllm|{key}|{max_tokens}|{temperature}|{json.dumps(model_own, sort_keys=True)}"

    def chat(self, conversations: Sequence[list[dict]]) -> list[Completion]:
        outputs = self.llm.chat(list(conversations), self.sampling, use_tqdm=False)
        return [
            Completion(
                o.outputs[0].text.strip(),
                len(o.prompt_token_ids or []),
                len(o.outputs[0].token_ids),
                finished=getattr(o.outputs[0], "finish_reason", "stop") != "length",  # cut at max_tokens: not finished
            )
            for o in outputs
        ]
