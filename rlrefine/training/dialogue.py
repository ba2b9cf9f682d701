"""Multi-turn RL of the decomposer (``--rollout dynamic``): each rollout is a dialogue with the frozen solver.

The policy writes one sub-question, the solver's answer comes back as a user turn (``format.dynamic_messages``), and
so on until the policy writes no new sub-question or reaches the run's cap: the loop of dynamic evaluation
(``evaluation.dynamic.converse``), with the policy as its decomposer, run inside TRL's GRPO trainer through its
``rollout_func``. Why ``rollout_func`` and not ``environment_factory``: an environment is reached through tool calls,
which the decomposer's format has none of and a tiny student's chat template cannot render; ``rollout_func`` keeps the
prompt, the format and the chat template the student was distilled with, and its ``env_mask`` keeps the solver's tokens
out of the loss.

A rollout's completion is the policy's turns and the solver's turns in one token sequence, as the chat template
renders the dialogue; only the policy's tokens are trained. Every round is one batched generation over the dialogues
still going and one batched solver call (``solve_unique``). The rewards see the dialogue's decomposition, the
sub-questions asked in the format, and the policy's own tokens (``Watched`` hands them over as the completion and its
ids): the solver reward grades the solver's final answer, which is its answer on those sub-questions, and the format,
cost, token-cost and multi-solver plugins work unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from rlrefine.core.format import dynamic_messages, numbered, render
from rlrefine.core.protocols import Decomposed


def _key(prompt: Sequence[Mapping]) -> str:
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in prompt])


class PolicyTurns:
    """The policy as a dynamic decomposer (``next_subquestion``) that keeps, per dialogue, the exact tokens it
    sampled and the solver's turns between them, with the mask that tells them apart."""

    name = "policy"

    def __init__(self, trainer, rows: Sequence[Mapping], prompts: Sequence[Sequence[Mapping]], instruction) -> None:
        self.trainer, self.instruction = trainer, instruction
        self.tokenizer = trainer.processing_class
        self.prompt_ids = trainer._tokenize_prompts(list(prompts))[0]
        self.ids: dict[int, list[int]] = {id(r): [] for r in rows}  # completion tokens so far
        self.mask: dict[int, list[int]] = {id(r): [] for r in rows}  # 1: the policy's, 0: the solver's turn
        self.logprobs: dict[int, list[float]] | None = {id(r): [] for r in rows}
        self.start = {id(r): p for r, p in zip(rows, self.prompt_ids)}
        self.failure: Exception | None = None

    def solver_turn(self, row: Mapping, history: Sequence[tuple[str, str | None]]) -> list[int]:
        """The tokens between the policy's last turn and its next one: the chat template's rendering of the solver's
        answer and the request for the next sub-question, after the end-of-turn token the policy wrote itself."""
        messages = dynamic_messages(row["context"], row["question"], history, self.instruction)
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.trainer.chat_template_kwargs
        )
        turn = text[text.rindex(numbered(len(history), history[-1][0])) + len(numbered(len(history), history[-1][0])) :]
        ids = self.ids[id(row)]
        eos = self.tokenizer.eos_token
        if ids and ids[-1] == self.tokenizer.eos_token_id and eos and turn.startswith(eos):
            turn = turn[len(eos) :]  # the policy ended its turn with it
        return self.tokenizer(turn, add_special_tokens=False)["input_ids"]

    def next_subquestion(self, rows, histories) -> list[Decomposed]:
        try:
            for row, history in zip(rows, histories):
                if history:
                    self._extend(row, self.solver_turn(row, history), 0, None)
            sequences = [self.start[id(r)] + self.ids[id(r)] for r in rows]
            turns, logprobs = self.trainer._generate_single_turn(sequences, None, {}, 1)
            for i, (row, turn) in enumerate(zip(rows, turns)):
                self._extend(row, list(turn), 1, None if logprobs is None else logprobs[i])
            texts = self.tokenizer.batch_decode(turns, skip_special_tokens=True)
            return [Decomposed(t, len(s), len(ids)) for t, s, ids in zip(texts, sequences, turns)]
        except Exception as exc:  # the loop would make it a per-problem error; a policy that cannot generate is a bug
            self.failure = exc
            raise

    def _extend(self, row, ids: list[int], mask: int, logprobs: list[float] | None) -> None:
        self.ids[id(row)] += ids
        self.mask[id(row)] += [mask] * len(ids)
        if self.logprobs is not None and (logprobs is not None or not mask):
            self.logprobs[id(row)] += logprobs if logprobs is not None else [0.0] * len(ids)
        else:
            self.logprobs = None  # transformers generation gives none: TRL computes them itself


class DialogueRollout:
    """TRL's ``rollout_func``: one dialogue with the solver per prompt it is handed (TRL hands each prompt once per
    completion of its group). Rows are found by their prompt, as ``train_dataset`` wrote it."""

    def __init__(self, rows: Sequence[Mapping], solver, max_rounds: int, instruction: str | None) -> None:
        from rlrefine.solvers import shared_solver

        self.rows = {_key(r["prompt"]): r for r in rows}
        self.solver, self.max_rounds, self.instruction = shared_solver(solver), max_rounds, instruction

    def __call__(self, prompts: list, trainer) -> dict:
        from rlrefine.evaluation.dynamic import converse

        rows = [dict(self.rows[_key(p)]) for p in prompts]  # a copy per rollout: the policy keeps state per row
        policy = PolicyTurns(trainer, rows, prompts, self.instruction)
        _, results, histories = converse(policy, self.solver, rows, self.max_rounds)
        if policy.failure is not None:
            raise policy.failure
        return {
            "prompt_ids": policy.prompt_ids,
            "completion_ids": [policy.ids[id(r)] for r in rows],
            "logprobs": None if policy.logprobs is None else [policy.logprobs[id(r)] for r in rows],
            "env_mask": [policy.mask[id(r)] for r in rows],
            "decomposition": [render([q for q, _ in h]) for h in histories],
            "policy_ids": [[t for t, m in zip(policy.ids[id(r)], policy.mask[id(r)]) if m] for r in rows],
        }
