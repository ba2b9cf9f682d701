from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlrefine.grading import extract_answer, f1_score, grade, parse_number


@given(
    st.text(), st.one_of(st.text(), st.lists(st.text(), max_size=3)), st.sampled_from(["numeric", "em", "f1", "acc"])
)
def test_grade_never_raises_and_is_bounded(prediction, gold, metric):
    assert 0.0 <= grade(extract_answer(prediction), gold, metric) <= 1.0


@given(st.integers(-(10**9), 10**9))
def test_numbers_round_trip(n):
    assert grade(extract_answer(f"Some steps .\nThe answer is: {n:,}"), str(n)) == 1.0
    assert grade(str(n + 1), str(n)) == 0.0


def test_numeric_forms():
    assert parse_number("$1,234.50") == Decimal("1234.5")
    assert extract_answer("blah\n#### 72") == "72"
    assert extract_answer("The answer is: 8 .") == "8"
    assert grade("8.0", "8") == 1.0 and grade(None, "8") == 0.0 and grade("", "8") == 0.0
    assert extract_answer(None) is None and extract_answer("   ") is None
    assert extract_answer("A1: 5\nA2: 7") is None  # no final answer said: not the last sub-answer


def test_text_metrics():
    assert grade("The Eiffel Tower", "eiffel tower", "em") == 1.0
    assert f1_score("Paris France", "Paris") == pytest.approx(2 / 3)
    assert grade("It is in Paris, France", "Paris", "acc") == 1.0
    assert grade("Parisian", "Paris", "acc") == 0.0
    assert grade("x", ["y", "x"], "em") == 1.0
    with pytest.raises(ValueError, match="unknown metric 'bleu'; valid: numeric, em, f1, acc"):
        grade("x", "x", "bleu")
