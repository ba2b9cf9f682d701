"""An example decomposer plugin, a complete file to copy: it wraps any other decomposer and drops the sub-questions
it repeats, then keeps at most ``cap``. Name it wherever a decomposer is named:

    rlrefine eval --decomposers teacher experiments/plugins/dedup_decomposer.py:Deduplicated:inner=teacher,cap=3
    --decomposers '{name: experiments/plugins/dedup_decomposer.py:Deduplicated, inner: "hf:Qwen/Qwen2.5-7B-Instruct"}'

A decomposer is an object with ``name``, ``price_key`` and ``decompose(rows) -> list[Decomposed]`` (text in the
sub-question format, ``rlrefine.core.format``). ``version``, if given, tells evaluation caches apart when settings change.
"""

from rlrefine.core.format import parse, render
from rlrefine.core.protocols import Decomposed
from rlrefine.decomposers import make_decomposer


class Deduplicated:
    def __init__(self, inner: str = "teacher", cap: int = 3) -> None:
        self.inner, self.cap = make_decomposer(inner), cap
        self.name, self.price_key = f"dedup({self.inner.name})", self.inner.price_key
        self.version = f"cap={cap}|{getattr(self.inner, 'version', '')}"

    def decompose(self, rows) -> list[Decomposed]:
        out = []
        for d in self.inner.decompose(rows):
            kept = list(dict.fromkeys(parse(d.text).subquestions))[: self.cap]
            out.append(Decomposed(render(kept), d.prompt_tokens, d.completion_tokens, d.error))
        return out
