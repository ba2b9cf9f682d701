"""The sub-question text format: the one place that renders a decomposition and parses model text back.

A decomposition is written as numbered lines ``Q1: ...`` (the paper's prompt asks for at most three), or the
paper's ``No decomposition .`` when the question needs none. ``parse`` never raises: whatever a model writes comes back
as a ``Decomposition`` whose ``problems`` say what was wrong, so a reward can penalise it and a run never dies.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

NO_DECOMPOSITION = "No decomposition ."
MAX_SUBQUESTIONS = 3  # the paper's prompt caps at three; its Table 10 found the cap best
MAX_CHARS = 300  # longer lines are cut: a rambling sub-question is not a sub-question
_NUMBERED = re.compile(r"^\s*(?:Q\s*\d+\s*[:.)]|\d+\s*[:.)]|[-*•])\s*", re.IGNORECASE)
_NONE = re.compile(r"^\s*no\s+decomposition\b", re.IGNORECASE)
_Q_MARK = re.compile(r"^\s*Q\s*\d+\s*[:.)]", re.IGNORECASE)
UNPARSEABLE = ("empty", "no_subquestions")  # problems of text that holds no decomposition at all


@dataclass(frozen=True)
class Decomposition:
    """Parsed decomposer output. ``valid`` means it followed the format exactly (no ``problems``); ``parseable``
    that it holds a decomposition at all, flawed or not (a ``Q1:`` line, or "No decomposition")."""

    subquestions: tuple[str, ...]
    problems: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def parseable(self) -> bool:
        return not set(UNPARSEABLE) & set(self.problems)

    @property
    def count(self) -> int:
        return len(self.subquestions)


def numbered(i: int, subquestion: str) -> str:
    """Sub-question ``i`` (from 1) as a line of decomposer text: ``Q{i}: ...``."""
    return f"Q{i}: {subquestion.strip()}"


def render(subquestions: list[str] | tuple[str, ...]) -> str:
    """Decomposer text for a list of sub-questions; the inverse of ``parse`` on well-formed input."""
    if not subquestions:
        return NO_DECOMPOSITION
    return "\n".join(numbered(i, q) for i, q in enumerate(subquestions, 1))


def prompt_key(messages: list[dict]) -> str:
    """A short hash of a prompt's text, for cache keys: another prompt must not hit old results."""
    return hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:12]


def parse(text: object, max_subquestions: int | None = MAX_SUBQUESTIONS) -> Decomposition:
    """Parse model text into sub-questions. Never raises; problems are named, not thrown.

    >>> parse("Q1: How many cards does Pia have ?\\nQ2: How many cards does Ada have ?").subquestions
    ('How many cards does Pia have ?', 'How many cards does Ada have ?')
    >>> parse("").problems
    ('empty',)
    >>> parse("No decomposition .")
    Decomposition(subquestions=(), problems=())

    Text with no sub-question line (a ``Q<i>:`` line, or a numbered or bulleted line that asks a question) holds no
    decomposition at all: prose, a refusal, a restated problem. Its lines still reach the solver, but it is named
    ``no_subquestions`` and is not ``parseable`` (teacher data drops it). A flawed decomposition stays parseable:

    >>> prose = parse("To solve this, we first find the eggs per day.\\n1. Janet has 16 ducks.")
    >>> prose.parseable, prose.problems[-1]
    (False, 'no_subquestions')
    >>> parse("Q1: How many eggs ?\\nQ2: How many eggs ?").parseable
    True
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    lines = [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]
    if not lines:
        return Decomposition((), ("empty",))
    if _NONE.match(lines[0]):
        return Decomposition((), () if len(lines) == 1 else ("text_after_no_decomposition",))
    problems: list[str] = []
    questions: list[str] = []
    asked = False  # a sub-question line seen: "Q<i>: ...", or "1. ...?" / "- ...?"
    for i, line in enumerate(lines, 1):
        match = _NUMBERED.match(line)
        if match is None:
            problems.append("unnumbered_line")
            body = line
        else:
            if not line.lstrip().upper().startswith(f"Q{i}:"):
                problems.append("misnumbered_line")
            body = line[match.end() :].strip()
            if body[:1] in (":", ".", ")"):  # "Q3::: How many ...": a GRPO seed wrote this 79 times in 1,000
                problems.append("stray_punctuation")
                body = body.lstrip(":.) ")
        if len(body) > MAX_CHARS:
            problems.append("overlong_line")
            body = body[:MAX_CHARS]
        if not body:
            problems.append("empty_line")
            continue
        asked = asked or (match is not None and (_Q_MARK.match(line) is not None or body.endswith("?")))
        if not body.endswith("?"):
            problems.append("not_a_question")
        elif body.count("?") > 1:  # "... have ? ? ?": padding an RL policy found when sub-questions cost reward
            problems.append("several_questions_in_one")
        questions.append(body)
    if len(set(questions)) < len(questions):
        problems.append("repeated_subquestion")
    if max_subquestions is not None and len(questions) > max_subquestions:
        problems.append("too_many_subquestions")  # named, so the format reward penalises it; not cut: the
        # solver gets what was written (a 5-hop world problem or a GSM8K socratic gold needs more than three)
    if not asked:
        problems.append("no_subquestions")  # always beside another problem: validity is unchanged by it
    return Decomposition(tuple(questions), tuple(dict.fromkeys(problems)))


def completion_text(completion: object) -> str:
    """The text of a TRL completion, which is a string or (conversational data) a list of messages: the last one's
    content. Nothing written (None, no message, a message without content) is "", never a Python repr to parse."""
    if isinstance(completion, list):
        return completion_text(completion[-1]) if completion else ""
    if isinstance(completion, dict):
        return completion_text(completion.get("content"))
    return "" if completion is None else str(completion)


def decomposer_instruction(cap: int | None = MAX_SUBQUESTIONS) -> str:
    """The paper's instruction (for real LLMs), asking for at most ``cap`` sub-questions; with no cap, for any number.

    >>> decomposer_instruction(None).split(" that ")[0]
    'Break the question into sub-questions'
    """
    most = "" if cap is None else f"at most {cap} "
    return (
        f"Break the question into {most}sub-questions that a solver answers one by one before the question. "
        "Write them as Q1: ... , Q2: ... , or write No decomposition . if none is needed."
    )


# A worked example shown to teacher LLMs before the question, as the paper's few-shot prompt does. SmolLM2-135M-Instruct
# on 100 GSM8K test problems wrote a parseable decomposition for 0 of them without it, 98 with it (README, Numbers).
# A second example answered "No decomposition ." made it answer that to every question, so there is one.
DEMONSTRATION = (
    "A shop sells pens at $2 each. Tom buys 3 pens and pays with a $10 bill. How much change does he get?",
    ("How much do 3 pens cost?", "How much is $10 minus the cost of the pens?"),
)


def decomposer_messages(
    context: str, question: str, instruction: str | None = None, demonstration: bool = False
) -> list[dict]:
    """The decomposer's prompt as chat messages (the paper's static, single-pass decomposition prompt).

    ``instruction=None`` uses the paper-style instruction with its cap of three (for real LLMs; a pipeline run asks
    for its own cap: ``PipelineArgs``); ``""`` drops it, which is what the
    tiny world models are trained with: they learn the task from data, and every prompt token costs a step.
    ``demonstration`` puts one worked example (``DEMONSTRATION``) before the question, as a user turn and the
    decomposer's answer: what a teacher LLM gets, never a student (it is trained on the plain prompt).

    >>> [m["role"] for m in decomposer_messages("", "How many ?", None, demonstration=True)]
    ['system', 'user', 'assistant', 'user']
    """
    instruction = decomposer_instruction() if instruction is None else instruction
    user = {"role": "user", "content": "\n".join(p for p in (context, f"Question: {question}") if p)}
    shown = []
    if demonstration:
        example, subquestions = DEMONSTRATION
        shown = [
            {"role": "user", "content": f"Question: {example}"},
            {"role": "assistant", "content": render(subquestions)},
        ]
    return [{"role": "system", "content": instruction}] * bool(instruction) + shown + [user]


NEXT_SUBQUESTION = "Write Q{k}: the next sub-question, or write No decomposition . if none is needed."


def dynamic_messages(
    context: str,
    question: str,
    history: Sequence[tuple[str, str | None]],
    instruction: str | None = None,
    demonstration: bool = False,
) -> list[dict]:
    """The decomposer's prompt in dynamic mode: the static prompt, then per earlier step its sub-question (an
    assistant turn) and the solver's answer with the request for the next one (a user turn). With no history it is
    the static prompt, so the first sub-question is asked as in static mode.

    >>> [m["role"] for m in dynamic_messages("", "How many ?", [("How many a ?", "3")], "")]
    ['user', 'assistant', 'user']
    >>> dynamic_messages("", "How many ?", [("How many a ?", None)], "")[-1]["content"].splitlines()[0]
    'A1: unknown'
    """
    messages = decomposer_messages(context, question, instruction, demonstration)
    for k, (subquestion, answer) in enumerate(history, 1):
        messages.append({"role": "assistant", "content": numbered(k, subquestion)})
        shown = "unknown" if answer is None else answer
        messages.append({"role": "user", "content": f"A{k}: {shown}\n{NEXT_SUBQUESTION.format(k=k + 1)}"})
    return messages


SOLVER_INSTRUCTION = (
    "Answer the sub-questions in order, one line each as A1: ... , A2: ... , then answer the question on a last "
    "line that starts with: The answer is:"
)


def solver_messages(
    context: str, question: str, subquestions: tuple[str, ...] | list[str], instruction: str | None = None
) -> list[dict]:
    """The paper's static solver prompt: all sub-questions at once, answered in order, then the question.

    ``instruction=""`` drops the instruction, as for the decomposer (tiny world solvers learn it from data).
    """
    instruction = SOLVER_INSTRUCTION if instruction is None else instruction
    parts = (context, render(subquestions) if subquestions else "", f"Question: {question}")
    user = {"role": "user", "content": "\n".join(p for p in parts if p)}
    return [{"role": "system", "content": instruction}, user] if instruction else [user]
