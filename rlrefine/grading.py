"""Answer grading: one module for rewards *and* evaluation, so the two can never drift apart.

Metrics (per dataset, as in the paper): ``numeric`` exact match of the final number (world, GSM8K), ``em`` and
``f1`` SQuAD-style over normalised text (DROP), ``acc`` gold contained in the prediction (Bamboogle). Every
function takes arbitrary text and never raises.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

METRICS = ("numeric", "em", "f1", "acc")
_ANSWER = re.compile(r"(?:the\s+answer\s+is|####)\s*:?\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_PUNCT = set(string.punctuation)


def extract_answer(text: object) -> str | None:
    """The answer a solver wrote after the last "The answer is:" (or GSM8K's "####"); None when it never says.

    A reply without the marker gets no answer rather than a guess from its last line: a sub-answer ("A2: 5")
    must not pass for the final one.

    >>> extract_answer("A1: 5\\nThe answer is: 1,200 ."), extract_answer("A1: 5")
    ('1,200', None)
    """
    matches = _ANSWER.findall(text) if isinstance(text, str) else []
    answer = matches[-1].strip().splitlines()[0].strip() if matches and matches[-1].strip() else ""
    return answer.rstrip(" .") or None


def parse_number(text: object) -> Decimal | None:
    """The last number in ``text`` ("$1,234.50" -> 1234.50), exact, or None.

    >>> parse_number("The answer is: $1,234.")
    Decimal('1234')
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return Decimal(found[-1].replace(",", ""))
    except InvalidOperation:
        return None


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


def _score_one(prediction: str, gold: str, metric: str) -> float:
    if metric == "numeric":
        p, g = parse_number(prediction), parse_number(gold)
        return float(p is not None and g is not None and p == g)
    if metric == "em":
        return float(normalize_text(prediction) == normalize_text(gold))
    if metric == "f1":
        return f1_score(prediction, gold)
    return float(bool(normalize_text(gold)) and f" {normalize_text(gold)} " in f" {normalize_text(prediction)} ")


def grade(prediction: object, gold: str | Sequence[str], metric: str = "numeric") -> float:
    """Score of ``prediction`` (an extracted answer or None) against one gold or several (max over them).

    >>> grade("8", "8"), grade("eight", "8"), grade(None, "8")
    (1.0, 0.0, 0.0)
    >>> round(grade("the Eiffel tower", ["Eiffel Tower Paris"], "f1"), 2)
    0.8
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if not isinstance(prediction, str) or not prediction.strip():
        return 0.0
    golds = [gold] if isinstance(gold, str) else list(gold)
    return max((_score_one(prediction, str(g), metric) for g in golds), default=0.0)
