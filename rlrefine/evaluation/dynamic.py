"""Dynamic decomposition (the paper's Table 6): the decomposer writes one sub-question at a time, each after seeing
the solver's answers to the earlier ones, until it writes no new sub-question or reaches the cap.

Behind the same protocols as static mode: a decomposer that has ``next_subquestion`` (``protocols.DynamicDecomposer``)
and any solver. Each round is one batched decomposer call over the problems still going and one batched solver call
on each one's sub-questions so far, so a round costs what a static batch costs, and the rounds add up: the paper found
dynamic decomposition 2-4x as expensive in tokens, and the counts here are summed over every call to show it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from rlrefine.core.format import MAX_SUBQUESTIONS, NEXT_SUBQUESTION, parse, render
from rlrefine.core.protocols import Decomposed, Decomposer, DynamicDecomposer, Solver, SolveResult, UsageError
from rlrefine.solvers.base import solve_unique

# how evaluation runs a decomposer: all sub-questions at once (the paper's pipeline), or one per round
MODES = ("static", "dynamic")
SUPPORTED = "none, oracle, teacher and model decomposers (a folder, hf:, vllm:, openai:)"
# the most rounds a dialogue runs when no cap limits its sub-questions (a run with the format reward's ``cap: null``):
# deeper than any world problem (depth 6 needs five one-hop sub-questions), so it ends a loop, not a decomposition
ROUND_LIMIT = 8
History = list[tuple[str, str | None]]  # per round: the sub-question asked and the solver's answer (None: unknown)


LOOP = 2  # the loop's own revision; 2: a dialogue closed with prose is judged and solved with that prose


def version(max_rounds: int = MAX_SUBQUESTIONS) -> str:
    """What evaluation caches key a dynamic cell on, beside the decomposer and the solver: the loop's revision, cap
    and prompt."""
    return hashlib.sha256(f"{LOOP}|{max_rounds}|{NEXT_SUBQUESTION}".encode()).hexdigest()[:8]


def rounds_for(cap: int | None) -> int:
    """How many rounds a dialogue may run under a run's cap on sub-questions (``None``: no cap, ``ROUND_LIMIT``)."""
    return ROUND_LIMIT if cap is None else cap


def check_modes(modes: Sequence[str]) -> list[str]:
    """The evaluation modes asked for, in order; an unknown one is one line naming the valid ones."""
    modes = list(dict.fromkeys(modes))
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise UsageError(
            f"unknown evaluation mode(s) {', '.join(map(repr, unknown)) or '(none)'}; valid: {', '.join(MODES)}"
        )
    return modes


def supports_dynamic(decomposer: Decomposer) -> bool:
    return callable(getattr(decomposer, "next_subquestion", None))


def require_dynamic(decomposer: Decomposer) -> DynamicDecomposer:
    """The decomposer, or a one-line error naming the ones that have a dynamic mode."""
    if not supports_dynamic(decomposer):
        raise UsageError(
            f"decomposer {decomposer.name!r} has no dynamic mode (a next_subquestion method); these do: {SUPPORTED}"
        )
    return decomposer  # type: ignore[return-value]


def next_question(reply: Decomposed, asked: Sequence[str]) -> str | None:
    """The first sub-question in a reply that was not asked before; None ends the problem (the no-decomposition
    marker, only repeats: a loop that re-asks would never end, or text without a sub-question: prose is not one,
    though a bare question line is).

    >>> next_question(Decomposed("Q2: How many cards does Ada have ?"), ["How many cards does Pia have ?"])
    'How many cards does Ada have ?'
    >>> next_question(Decomposed("Pia has 22 cards, so we are done"), []) is None
    True
    """
    parsed = parse(reply.text, None)
    found = parsed.subquestions if parsed.parseable else [q for q in parsed.subquestions if q.endswith("?")]
    return next((q for q in found if q not in asked), None)


def _shown(result: SolveResult, asked: int) -> str | None:
    """The solver's answer to the latest sub-question: its trace's last entry, when the trace covers every one."""
    return result.trace[-1].get("answer") if len(result.trace) == asked and result.trace else None


def _ask(decomposer: DynamicDecomposer, rows, histories) -> list[Decomposed]:
    """One batched decomposer call; a decomposer that raises or miscounts fails those problems, not the run."""
    try:
        replies = decomposer.next_subquestion(rows, histories)
        if len(replies) != len(rows):
            raise RuntimeError(f"decomposer {decomposer.name} returned {len(replies)} replies for {len(rows)} problems")
        return list(replies)
    except Exception as exc:  # noqa: BLE001 - a backend failure is a per-problem error
        return [Decomposed("", error=f"{type(exc).__name__}: {exc}") for _ in rows]


def solve_dynamic(
    decomposer: Decomposer, solver: Solver, rows: Sequence[Mapping], max_rounds: int = MAX_SUBQUESTIONS
) -> tuple[list[Decomposed], list[SolveResult]]:
    """Decompose and solve every problem dynamically: (decomposition, result) per problem, in order.

    A decomposition is the sub-questions asked, in the format, with the decomposer's tokens summed over rounds; a
    result is the solver's on the final list of sub-questions, with the solver's tokens summed over every call. A
    failed decomposer or solver call gives that problem an error result (``decomposer: ...`` or the solver's)."""
    decomposed, results, _ = converse(decomposer, solver, rows, max_rounds)
    return decomposed, results


def converse(
    decomposer: Decomposer, solver: Solver, rows: Sequence[Mapping], max_rounds: int = MAX_SUBQUESTIONS
) -> tuple[list[Decomposed], list[SolveResult], list[History]]:
    """``solve_dynamic``, and each problem's dialogue: what was asked and what the solver answered, per round. The one
    loop behind dynamic evaluation, dynamic SFT data and multi-turn RL rollouts."""
    dynamic = require_dynamic(decomposer)
    rows = list(rows)
    histories: list[History] = [[] for _ in rows]
    tokens = [[0, 0] for _ in rows]  # decomposer prompt, completion
    spent = [[0, 0] for _ in rows]  # solver prompt, completion
    errors: list[str | None] = [None] * len(rows)  # why a problem has no answer (a decomposer or solver failure)
    failed: list[str | None] = [None] * len(rows)  # the decomposer's own failure, as a static Decomposed carries it
    last: list[SolveResult | None] = [None] * len(rows)
    closing: list[str | None] = [None] * len(rows)  # a last turn that holds no sub-question: prose, or nothing
    active = list(range(len(rows)))
    for _ in range(max_rounds):
        replies = _ask(dynamic, [rows[i] for i in active], [list(histories[i]) for i in active])
        going = []
        for i, reply in zip(active, replies):
            tokens[i][0] += reply.prompt_tokens
            tokens[i][1] += reply.completion_tokens
            question = None if reply.error else next_question(reply, [q for q, _ in histories[i]])
            if reply.error:
                failed[i], errors[i] = reply.error, f"decomposer: {reply.error}"
            if question is not None:
                histories[i].append((question, None))
                going.append(i)
            elif not reply.error and not parse(reply.text, None).parseable:
                closing[i] = reply.text.strip()
        _solve(solver, rows, going, [[q for q, _ in histories[i]] for i in going], spent, errors, last)
        for i in going:  # the answer shown next round
            histories[i][-1] = (histories[i][-1][0], _shown(last[i], len(histories[i])))
        active = [i for i in going if errors[i] is None]
        if not active:
            break
    texts = [written(h, c) for h, c in zip(histories, closing)]
    # the final answer is the solver's on the decomposition as written, when that is not what the last round asked:
    # nothing asked (a direct solve), or prose at the end, whose lines reach the solver as a static decomposer's do
    final = [i for i, h in enumerate(histories) if errors[i] is None and (not h or closing[i])]
    _solve(solver, rows, final, [list(parse(texts[i], None).subquestions) for i in final], spent, errors, last)
    decomposed = [Decomposed(text, t[0], t[1], reason) for text, t, reason in zip(texts, tokens, failed)]
    return decomposed, [_result(last[i], spent[i], errors[i]) for i in range(len(rows))], histories


def written(history: History, closing: str | None = None) -> str:
    """A dialogue's decomposition as its decomposer wrote it: the sub-questions asked, in the format, and the last
    turn when it held no sub-question (prose, nothing), so the format is judged as a static decomposition's is.

    >>> written([("How many a ?", "3")], "So the answer is 3")
    'Q1: How many a ?\\nSo the answer is 3'
    >>> written([], ""), written([])
    ('', 'No decomposition .')
    """
    asked = [q for q, _ in history]
    if closing is None:
        return render(asked)
    return "\n".join([render(asked)] * bool(asked) + [closing] * bool(closing))


def _solve(solver, rows, todo, asked, spent, errors, last) -> None:
    """One batched solver call on the problems in ``todo``, each on its sub-questions in ``asked``: adds its tokens
    and keeps its result (and error) as the problem's last."""
    if not todo:
        return
    for i, result in zip(todo, solve_unique(solver, [rows[i] for i in todo], asked)):
        spent[i][0] += result.prompt_tokens
        spent[i][1] += result.completion_tokens
        last[i], errors[i] = result, result.error


def _result(result: SolveResult | None, spent: list[int], error: str | None) -> SolveResult:
    if error is not None or result is None:
        return SolveResult(answer=None, prompt_tokens=spent[0], completion_tokens=spent[1], error=error or "no answer")
    return SolveResult(result.answer, result.text, result.trace, spent[0], spent[1])
