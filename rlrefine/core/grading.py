"""Answer grading: one module for rewards *and* evaluation, so the two can never drift apart.

Metrics (per dataset, as in the paper): ``numeric`` exact match of the final number (world, GSM8K), ``em`` and
``f1`` SQuAD-style over normalised text (DROP), ``acc`` gold contained in the prediction (Bamboogle) unless the
prediction offers alternatives or a negation the gold does not have ("Paris or London", "not Paris"). Every
function takes arbitrary text and never raises (``grade`` raises only on an unknown metric name).

**Where the final answer is** (``extract_answer``). A reply states its final answer with a marker:

* a phrase: "answer is", "answer:" or "answer =", which covers "The answer is:", "The final answer is",
  "Therefore, the answer is", "Final answer:", "**Answer:**"; also "the answer to the (original|main|whole|
  overall|given|final) question/problem is"; and a "Final Answer" heading alone on its line (the answer is on
  the next non-empty line);
* GSM8K's "####" followed on its line by something other than a word (a markdown heading "#### Step 2" is no
  marker);
* ``\\boxed{...}`` (or ``\\fbox{...}``) anywhere.

The last marker wins. After a phrase the answer is the rest of its line (or the next non-empty line when the
line ends there); if that contains boxes, the answer is their contents. A box with no phrase before it on its
line is the answer by itself (all boxes on that line, joined by commas). Markers on a sub-answer line
(``A2: ...``) never count, and neither does anything else: a reply without a marker has no answer (None), never
a guess from its last number.

What the ``numeric`` metric reads, one stated value, is ``rlrefine.core.numeric``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from rlrefine.core.numeric import numeric_equal
from rlrefine.core.protocols import UsageError

METRICS = ("numeric", "em", "f1", "acc")
_PUNCT = set(string.punctuation)

# ---------------------------------------------------------------------------------------------- final answer
_MARKER = re.compile(
    r"(?<![\w-])answer(?:\s+to\s+(?:the|this|your)\s+(?:(?:original|main|whole|overall|given|final)\s+)?"
    r"(?:question|problem))?[ \t]*(?:\*\*|__)?[ \t]*(?:is\b(?:[ \t]*:)?|:|=)"
    r"|(?<![\w-])final\s+answer[ \t]*(?:\*\*|__)?[ \t]*:?[ \t]*(?:\*\*|__)?[ \t]*(?=\r?\n|\Z)"
    r"|####(?!#)(?=[ \t]*[^\s#A-Za-z])",
    re.IGNORECASE,
)
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_SUBANSWER_LINE = re.compile(r"[ \t]*(?:\*\*)?A\d+(?:\*\*)?[ \t]*:")
_TEXT_CMD = re.compile(r"\\(?:text[a-z]*|math(?:rm|bf|it|sf|tt)|mbox|operatorname)\s*\{([^{}]*)\}")


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """Top-level closed ``\\boxed{...}``s as (start, end, contents); one pass over the braces (linear time)."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return []
    close, stack = {}, []
    for m in re.finditer(r"[{}]", text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            close[stack.pop()] = m.start()
    out, inside_until = [], -1
    for m in _BOX.finditer(text):
        brace = m.end() - 1
        if m.start() < inside_until or brace not in close:
            continue  # nested in an earlier box, or never closed
        inside_until = close[brace] + 1
        out.append((m.start(), inside_until, text[brace + 1 : close[brace]]))
    return out


def _group_end(text: str, begin: int, stop: int) -> int:
    """Where the brace group that ``begin`` sits in closes (``stop`` if it does not close before it)."""
    depth = 0
    for i in range(begin, stop):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth < 0:
            return i
    return stop


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _on_subanswer_line(text: str, pos: int) -> bool:
    return _SUBANSWER_LINE.match(text, _line_start(text, pos)) is not None


def _clean_statement(answer: str) -> str | None:
    answer = answer.replace("**", "")
    if "\\" in answer:
        answer = _TEXT_CMD.sub(r"\1", answer)
    answer = answer.strip().lstrip(":").strip().rstrip(" .")
    return answer or None


def extract_answer(text: object) -> str | None:
    """The final answer a reply states (see the module docstring for the markers); None when it states none.

    A sub-answer ("A2: 5") never passes for the final answer, and neither does the last line of a reply that
    never states one.

    >>> extract_answer("A1: 5\\nThe answer is: 1,200 ."), extract_answer("A1: 5")
    ('1,200', None)
    >>> extract_answer("So the final answer is $\\\\boxed{\\\\frac{3}{4}}$."), extract_answer("x\\n#### 72")
    ('\\\\frac{3}{4}', '72')
    """
    if not isinstance(text, str):
        return None
    boxes = _boxes(text)
    markers = [(m.start(), m.end(), None) for m in _MARKER.finditer(text)] + boxes
    markers = [m for m in markers if not _on_subanswer_line(text, m[0])]
    if not markers:
        return None
    start, end, content = max(markers, key=lambda m: m[0])
    if content is not None:  # a box: the answer itself unless a phrase on its line introduces it
        first = _line_start(text, start)
        phrases = [m for m in markers if m[2] is None and first <= m[0] < start]
        if not phrases:
            last = _line_end(text, start)
            return _clean_statement(", ".join(c for s, _, c in boxes if first <= s < last))
        start, end, _ = phrases[-1]
    begin = end + len(text[end:]) - len(text[end:].lstrip())  # the rest of the line, or the next non-empty one
    stop = _line_end(text, begin)
    if any(s < start < e for s, e, _ in boxes):  # a phrase inside a box: up to the brace that closes around it
        stop = _group_end(text, begin, stop)
    if "\n" in text[end:begin] and _on_subanswer_line(text, begin):
        return None
    inner = [c for s, _, c in boxes if begin <= s < stop]
    return _clean_statement(", ".join(inner) if inner else text[begin:stop])


# ---------------------------------------------------------------------------------------------- text metrics
_ALTERNATIVE_WORDS = {"or", "nor", "not", "either", "neither", "versus", "vs", "isnt", "wasnt", "arent", "never"}


def normalize_text(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, gold: str) -> float:
    pred, ref = normalize_text(prediction).split(), normalize_text(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref:
        return float(pred == ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _contains(prediction: str, gold: str) -> float:
    """Bamboogle's accuracy: the gold is in the prediction, and the prediction offers no alternatives or
    negation ("Paris or London", "not Paris") that the gold itself does not contain."""
    pred, ref = normalize_text(prediction), normalize_text(gold)
    if not ref or (set(pred.split()) & _ALTERNATIVE_WORDS) - set(ref.split()):
        return 0.0
    return float(f" {ref} " in f" {pred} ")


def _score_one(prediction: str, gold: str, metric: str) -> float:
    if metric == "numeric":
        return float(numeric_equal(prediction, gold))
    if metric == "em":
        return float(normalize_text(prediction) == normalize_text(gold))
    if metric == "f1":
        return f1_score(prediction, gold)
    return _contains(prediction, gold)


def grade(prediction: object, gold: str | Sequence[str], metric: str = "numeric") -> float:
    """Score of ``prediction`` (an extracted answer or None) against one gold or several (max over them).

    >>> grade("8", "8"), grade("eight", "8"), grade(None, "8"), grade("13, not 12", "12"), grade("3/4", "0.75")
    (1.0, 0.0, 0.0, 0.0, 1.0)
    >>> round(grade("the Eiffel tower", ["Eiffel Tower Paris"], "f1"), 2)
    0.8
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if not isinstance(prediction, str) or not prediction.strip():
        return 0.0
    if isinstance(gold, str):
        return _score_one(prediction, gold, metric)
    return max((_score_one(prediction, str(g), metric) for g in gold), default=0.0)
