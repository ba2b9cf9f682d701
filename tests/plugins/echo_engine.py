"""An engine in one file: every conversation's last message echoed back as the reply, with the gold answer the world
question's story holds nowhere; named where a solver or decomposer is wanted, it becomes the model solver or
decomposer that prompts it (``registry.ON_ENGINE``)."""

from rlrefine.core.protocols import Completion


class EchoEngine:
    def __init__(self, model: str, max_tokens: int = 64, answer: str = "8") -> None:
        self.model, self.answer = model, answer
        self.name, self.version = f"echo:{model}", f"echo|{model}|{answer}"

    def chat(self, conversations):
        return [Completion(f"Q1: {c[-1]['content'][:20]} ?\nThe answer is: {self.answer}", 5, 3) for c in conversations]
