"""Decomposers that are language models, on any engine: a trained student folder (``model:FOLDER`` or just the
folder), or a real LLM as teacher or decomposer (``hf:``, ``vllm:``, ``openai:`` specs) with the paper's prompt."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from rlrefine.core.format import decomposer_messages, dynamic_messages, prompt_key
from rlrefine.core.protocols import ChatEngine, Completion, Decomposed, UsageError
from rlrefine.engines import make_engine


class ModelDecomposer:
    """A chat engine as a decomposer: one pass per problem, greedy; ``sample`` draws k for pass@k and RFT.

    ``demonstration`` shows one worked example before the question (``format.DEMONSTRATION``): for teacher LLMs.
    """

    def __init__(
        self,
        engine: ChatEngine,
        name: str | None = None,
        instruction: str | None = None,
        price_key: str = "student",
        demonstration: bool = False,
    ) -> None:
        self.engine, self.name, self.price_key, self.instruction = engine, name or engine.name, price_key, instruction
        self.demonstration = demonstration
        # what the eval cache keys on: another model, prompt (its text, not just its settings) or length limit must
        # not hit old results
        prompt = decomposer_messages("{context}", "{question}", instruction, demonstration)
        self.version = f"{engine.version}|{prompt_key(prompt)}"

    def messages(self, row: Mapping) -> list[dict]:
        return decomposer_messages(row["context"], row["question"], self.instruction, self.demonstration)

    def decompose(self, rows: Sequence[Mapping]) -> list[Decomposed]:
        return [
            Decomposed(c.text, c.prompt_tokens, c.completion_tokens, c.error)
            for c in self.engine.chat([self.messages(r) for r in rows])
        ]

    def next_subquestion(
        self, rows: Sequence[Mapping], histories: Sequence[Sequence[tuple[str, str | None]]]
    ) -> list[Decomposed]:
        """Dynamic mode: one batched chat over every problem, each shown its sub-questions and the solver's answers
        so far (``format.dynamic_messages``). A student trained on static text has never seen such a conversation."""
        conversations = [
            dynamic_messages(r["context"], r["question"], h, self.instruction, self.demonstration)
            for r, h in zip(rows, histories)
        ]
        return [
            Decomposed(c.text, c.prompt_tokens, c.completion_tokens, c.error) for c in self.engine.chat(conversations)
        ]

    def sample(
        self, rows: Sequence[Mapping], n: int, temperature: float = 1.0, seed: int | None = None
    ) -> list[list[Completion]]:
        if not hasattr(self.engine, "sample"):
            raise UsageError(
                f"decomposer {self.name}: sampling needs a local model (hf engine), not {self.engine.name}"
            )
        return self.engine.sample([self.messages(r) for r in rows], n=n, temperature=temperature, seed=seed)


def from_folder(
    path: str,
    instruction: str | None = "",
    max_tokens: int = 64,
    batch_size: int = 64,
    dtype: str = "auto",
    device: str | None = None,
) -> ModelDecomposer:
    """A decomposer you trained (a local folder), prompted as the tiny world students are trained: no instruction
    (``instruction: null`` gives the paper's, for a real LLM you fine-tuned). Priced as a student."""
    engine = make_engine(
        "hf", str(path), "decomposer", max_tokens=max_tokens, batch_size=batch_size, dtype=dtype, device=device
    )
    return ModelDecomposer(engine, str(path), instruction, "student")


def on_engine(
    engine: str | type, model: str, price_key: str | None = None, demonstration: bool | None = None, **options
) -> ModelDecomposer:
    """``ENGINE:MODEL`` (``hf:``, ``vllm:``, ``openai:``, any engine by name or class). One rule for every engine: a
    local folder (a model you trained; ``FOLDER@URL`` when served) is a ``student``, prompted as it was trained (the
    paper's instruction) and priced as one; anything else (a hub id, a served or hosted model) is a ``teacher``: priced
    as one, and shown the worked example first. ``price_key`` and ``demonstration`` override."""
    built = make_engine(engine, model, "decomposer", **options)
    student = os.path.isdir(str(model).rpartition("@")[0] or str(model))
    demonstration = not student if demonstration is None else demonstration
    return ModelDecomposer(built, None, None, price_key or ("student" if student else "teacher"), demonstration)
