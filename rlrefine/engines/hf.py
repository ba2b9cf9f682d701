"""A local transformers model (folder or hub id) as a chat engine: batched generation with left padding and the KV
cache (``rlrefine.engines.models.generate``), the model's own chat template, one shared copy per process."""

from __future__ import annotations

from collections.abc import Sequence

from rlrefine.core.protocols import Completion
from rlrefine.engines.models import generate, load, weights_version


class HFEngine:
    backend = "hf"

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        device: str | None = None,
        max_tokens: int = 512,
        batch_size: int = 64,
    ) -> None:
        self.model, self.tokenizer = load(model, dtype=dtype, device=device)
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.name = f"hf:{model}"
        # what eval caches key on: retrained weights or another length limit must not hit old results
        self.version = f"hf|{weights_version(model)}|{dtype}|{max_tokens}"

    def chat(self, conversations: Sequence[list[dict]]) -> list[Completion]:
        """Greedy replies, in input order."""
        return [c[0] for c in self.sample(conversations, n=1, temperature=0.0)]

    def sample(
        self, conversations: Sequence[list[dict]], n: int = 1, temperature: float = 1.0, seed: int | None = None
    ) -> list[list[Completion]]:
        """``n`` replies per conversation (greedy at temperature 0): pass@k and rejection sampling use these."""
        return generate(
            self.model,
            self.tokenizer,
            conversations,
            n=n,
            do_sample=temperature > 0,
            temperature=temperature or 1.0,
            max_new_tokens=self.max_tokens,
            batch_size=self.batch_size,
            seed=seed,
        )
