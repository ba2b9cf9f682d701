import signal
import threading
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlrefine.core import numeric
from rlrefine.core.grading import extract_answer, f1_score, grade
from rlrefine.core.numeric import parse_number


@settings(deadline=None)  # the first call that reaches math-verify imports sympy's parsers: no per-example clock
@given(
    st.text(), st.one_of(st.text(), st.lists(st.text(), max_size=3)), st.sampled_from(["numeric", "em", "f1", "acc"])
)
def test_grade_never_raises_and_is_bounded(prediction, gold, metric):
    assert 0.0 <= grade(extract_answer(prediction), gold, metric) <= 1.0
    assert 0.0 <= grade(prediction, gold, metric) <= 1.0


@given(st.integers(-(10**9), 10**9))
def test_numbers_round_trip(n):
    assert grade(extract_answer(f"Some steps .\nThe answer is: {n:,}"), str(n)) == 1.0
    assert grade(str(n + 1), str(n)) == 0.0


_numbers = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.integers(-(10**6), 10**6).map(lambda n: f"{n:,}"),
    st.decimals(-1000, 1000, places=2, allow_nan=False, allow_infinity=False).map(str),
)
_joiners = st.one_of(
    st.sampled_from(
        [", not ", " or ", " and ", ", ", " - ", "-", " to ", "/", " = ", " ", "; ", " (", " apples and ", "\n"]
    ),
    st.text(max_size=6),
)


@settings(deadline=None)
@given(_numbers, _numbers, _joiners, st.sampled_from(["The answer is: {}", "\\boxed{{{}}}", "#### {}", "{}"]))
def test_a_reply_naming_two_numbers_is_never_right_for_both(a, b, joiner, template):
    """The reward hack: list candidates and let the grader pick the one that matches. Whatever sits between
    the two numbers, at most one of them is graded correct."""
    if Decimal(a.replace(",", "")) == Decimal(b.replace(",", "")):
        return
    answer = extract_answer(template.format(f"{a}{joiner}{b}"))
    assert not (grade(answer, a.replace(",", "")) == 1.0 and grade(answer, b.replace(",", "")) == 1.0)


REPLIES = [
    # final-answer markers
    ("A1: 5\nA2: 7\nThe answer is: 12", "12", 1.0),
    ("The final answer is 12.", "12", 1.0),
    ("Therefore, the answer is 2.5", "2.5", 1.0),
    ("Final answer: 8", "8", 1.0),
    ("**Final Answer:** 42", "42", 1.0),
    ("## Final Answer\n\n42", "42", 1.0),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72", 1.0),
    ("So she has $\\boxed{18}$ dollars left.", "18", 1.0),
    ("The final answer is $\\boxed{\\frac{3}{4}}$. I hope it is correct.", "0.75", 1.0),
    ("The final answer is:\n$$\n\\boxed{12}\n$$", "12", 1.0),
    ("#### Step 1\nShe buys 3 bags of 2.\nThe answer is 6", "6", 1.0),  # a markdown heading is no marker
    ("The answer is 13.\nWait, 3 + 9 is 12. The answer is 12.", "12", 1.0),  # the last statement counts
    ("The answer is 13.\nWait, 3 + 9 is 12. The answer is 12.", "13", 0.0),
    ("A1: 5\nA2: 7", "7", 0.0),  # sub-answers only: never the final answer
    ("A1: 5\nA2: The answer is 7", "7", 0.0),  # ... even when phrased like one
    ("She has 12 apples left.", "12", 0.0),  # no final answer stated
    # units, currency, separators
    ("The answer is $1,234.50", "1234.5", 1.0),
    ("The answer is: 72 dollars.", "72", 1.0),
    ("The answer is 12 apples", "12", 1.0),
    ("The answer is 1,200", "1200", 1.0),
    ("The answer is 1 234 567", "1234567", 1.0),
    ("The answer is $1{,}234$", "1234", 1.0),
    ("The answer is $12.00", "12", 1.0),
    ("The answer is $18/day", "18", 1.0),
    ("The answer is 18 m^2", "18", 1.0),
    ("The answer is 50%", "50", 1.0),  # a percentage is the number as written
    ("The answer is 50%", "0.5", 0.0),
    ("The answer is 1.5 million", "1500000", 1.0),
    # numerals
    ("The answer is 8.0", "8", 1.0),
    ("The answer is: -7", "-7", 1.0),
    ("The answer is: \u22127", "-7", 1.0),  # Unicode minus
    ("The answer is: \u22127", "7", 0.0),
    ("The answer is 3/4", "0.75", 1.0),
    ("The answer is \\(\\dfrac{3}{4}\\)", "0.75", 1.0),
    ("The answer is 1e3", "1000", 1.0),
    ("The answer is $1.5 \\times 10^{3}$", "1500", 1.0),
    ("The answer is 0.333", "1/3", 0.0),  # exact, not rounded
    ("The answer is eight", "8", 0.0),  # digits only
    ("The answer is 12!", "12", 1.0),
    ("The answer is 3 × 4 = 12", "12", 1.0),  # an equation states its right-hand side
    ("The answer is x = 12", "12", 1.0),
    ("The answer is 12 (3 × 4)", "12", 1.0),  # a remark, not a product
    ("The answer is 12 (12 apples)", "12", 1.0),  # candidates that agree count once
    ("The answer is 12. To check: 3 × 4 = 12, not 13.", "12", 1.0),  # the first sentence states it
    # several candidates: no credit for any
    ("The answer is: 13, not 12", "12", 0.0),
    ("The answer is: 13, not 12", "13", 0.0),
    ("The answer is 7 or 9", "9", 0.0),
    ("The answer is between 5 and 6", "6", 0.0),
    ("The answer is 12 apples and 3 pears", "3", 0.0),
    ("The answer is 12 apples and 3 pears", "12", 0.0),
    ("The answer is 2024-05-01", "-1", 0.0),
    ("The answer is 2024-05-01", "2024", 0.0),
    ("The answer is 5/1/2024", "2024", 0.0),  # a date, not 5 / 1 / 2024
    ("The answer is 5/1/2024", "5/2024", 0.0),  # read as arithmetic it would equal 5/2024
    ("The answer is 5/1", "5", 1.0),  # one division is arithmetic: 5 / 1
    # a later, more specific marker wins over a sub-answer's "answer is"
    ("The answer is 5 for the first part.\nThe answer to the original question is 12.", "12", 1.0),
    ("The answer is 5 for the first part.\nThe answer to the original question is 12.", "5", 0.0),
    ("The answer is 5-6 hours", "6", 0.0),
    ("The answer is 7 9", "9", 0.0),
    ("The answer is x = 12 and y = 13", "13", 0.0),
    ("The answer is 13 because 3 + 9 = 12", "12", 0.0),
    ("The answer is 13 apples (3 + 9 = 12)", "12", 0.0),
    ("\\boxed{13}, not \\boxed{12}", "12", 0.0),
    ("The answer is \\boxed{7} or \\boxed{9}", "9", 0.0),
    # hedges: an approximation keeps its value, a bound or negation is no value
    ("The answer is about 12", "12", 1.0),
    ("The answer is at least 12", "12", 0.0),
    ("The answer is more than 12", "12", 0.0),
    ("The answer is not 12", "12", 0.0),
    ("The answer is 12 ± 1", "12", 0.0),
]


@pytest.mark.parametrize("reply, gold, expected", REPLIES)
def test_solver_replies_graded_as_a_careful_grader_would(reply, gold, expected):
    assert grade(extract_answer(reply), gold) == expected


def test_grading_works_off_the_main_thread():
    """TRL runs async rewards on a daemon thread: math-verify's signal-based timeout must not be used there."""
    numeric._math_value.cache_clear()
    results = []

    cases = (("\\frac{21}{28}", "0.75"), ("52", "52"), ("7 or 9", "9"))

    def work():
        results.append([grade(extract_answer(f"The answer is {answer}"), gold) for answer, gold in cases])

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(60)
    assert results == [[1.0, 1.0, 0.0]]


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="no SIGALRM here")
def test_grading_leaves_the_callers_alarm_alone():
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        signal.alarm(1000)
        numeric._math_value.cache_clear()
        assert grade("\\frac{9}{12}", "0.75") == 1.0
        assert signal.alarm(0) > 0  # still pending: grading did not cancel it
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_numeric_forms():
    assert parse_number("$1,234.50") == Decimal("1234.5")
    assert parse_number("1/3") is None and parse_number("3/4") == Decimal("0.75") and parse_number("7 or 9") is None
    assert extract_answer("blah\n#### 72") == "72"
    assert extract_answer("The answer is: 8 .") == "8"
    assert extract_answer("So \\boxed{\\boxed{12}} apples") == "\\boxed{12}" and grade("\\boxed{12}", "12") == 1.0
    assert grade("8.0", "8") == 1.0 and grade(None, "8") == 0.0 and grade("", "8") == 0.0
    assert extract_answer(None) is None and extract_answer("   ") is None
    assert extract_answer("A1: 5\nA2: 7") is None  # no final answer said: not the last sub-answer
    assert extract_answer("The answer is:\nA1: 5") is None  # the next line is a sub-answer
    assert grade("The answer is 3", "3") == 1.0  # an unextracted reply states one number too
    assert grade("12", ["13", "12"]) == 1.0 and grade("\\sqrt{2}", "\\sqrt{2}") == 1.0
    assert grade("10^{999999}", "1") == 0.0 and grade("1e99999", "1") == 0.0  # no unbounded sympy work


def test_text_metrics():
    assert grade("The Eiffel Tower", "eiffel tower", "em") == 1.0
    assert f1_score("Paris France", "Paris") == pytest.approx(2 / 3)
    assert grade("It is in Paris, France", "Paris", "acc") == 1.0
    assert grade("Parisian", "Paris", "acc") == 0.0
    assert grade("Paris or London", "Paris", "acc") == 0.0  # alternatives: no credit for either
    assert grade("not Paris", "Paris", "acc") == 0.0
    assert grade("War or Peace", "War or Peace", "acc") == 1.0  # unless the gold says so itself
    assert grade("x", ["y", "x"], "em") == 1.0
    with pytest.raises(ValueError, match="unknown metric 'bleu'; valid: numeric, em, f1, acc"):
        grade("x", "x", "bleu")


EXTRACTED = [  # (reply, what extract_answer gives): exactly the marked statement, no more and no less
    ("The result is \\fbox{12}", "12"),  # \fbox is a box too
    ("\\boxed{1}\\boxed{2}", "1, 2"),  # a box right after another is a box of its own
    ("\\boxed{1} and \\boxed{2}", "1, 2"),  # all boxes of the line, joined by commas
    ("The answer is \\boxed{1} and \\boxed{2}", "1, 2"),
    ("\\boxed{5} so the answer is \\boxed{12}", "12"),  # after a phrase: only the boxes that follow it
    ("\\boxed{3 \\boxed{4}", "4"),  # a box never closed is skipped, not the end of the search
    ("\\boxed{\\boxed{1}} and \\boxed{2}", "\\boxed{1}, 2"),  # a nested box belongs to its outer box
    ("\n\\boxed{5}", "5"),
    ("The answer is 12\nWe are done.\nThanks", "12"),  # the rest of the marker's line only
    ("The answer is 12\nA1: 5", "12"),  # a sub-answer after the final answer does not hide it
    ("The answer is:\n12\nA1: 5", "12"),  # the line after a bare marker
    ("**Final Answer:** 42", "42"),  # markdown bold is dropped
    ("The answer is \\text{Paris}", "Paris"),  # a LaTeX text command is unwrapped
    ("The answer is :: 12", "12"),  # leading colons are dropped
    ("The answer is XIX.", "XIX"),  # a trailing period goes, the letters stay
    ("\nA1: The answer is 5", None),  # a sub-answer line, even right after a leading newline
    ("\nA1: \\boxed{5}", None),
    ("A1: the answer to the\nquestion is 5", None),  # a marker that starts on a sub-answer line
    ("The answer is:\nA1: 5\nA2: 7", None),
]


@pytest.mark.parametrize("reply, answer", EXTRACTED)
def test_extract_answer_returns_exactly_the_marked_statement(reply, answer):
    assert extract_answer(reply) == answer


def test_a_phrase_inside_a_box_introduces_the_answer():
    """The last marker wins even when it sits inside a box: the answer is what follows "Answer:", not the box's
    whole text (which would fail exact match)."""
    assert grade(extract_answer("\\boxed{\\text{Answer: Paris}}"), "Paris", "em") == 1.0


def test_text_metrics_at_their_edges():
    assert f1_score("", "") == 1.0  # both empty: the same (empty) answer
    assert f1_score("the", "a") == 1.0  # both empty once articles go
    assert f1_score("x", "") == 0.0 and f1_score("", "x") == 0.0
    assert f1_score("Paris", "London") == 0.0  # no token in common
    assert grade("the", "a", "f1") == 1.0
    # each metric is its own: a longer prediction is no exact match, a partial f1 (2/3), and contains the gold
    assert grade("Paris France", "Paris", "em") == 0.0
    assert grade("Paris France", "Paris", "f1") == pytest.approx(2 / 3)
    assert grade("Paris France", "Paris", "acc") == 1.0
    assert grade("2 apples", "2", "numeric") == 1.0 and grade("2 apples", "2", "em") == 0.0


@pytest.mark.parametrize("metric", ["numeric", "em", "f1", "acc"])
def test_no_gold_answer_gives_no_credit(metric):
    assert grade("8", [], metric) == 0.0


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("\\boxed{Answer: 12}", "12"),
        ("\\boxed{The answer is 12} and more", "12"),
        ("\\boxed{\\text{Answer: Paris}}", "Paris"),
        ("\\boxed{Answer: \\frac{1}{2}}", "\\frac{1}{2}"),  # braces of its own inside: the box's, not the first
        ("\\boxed{Answer: {{12}}}", "{{12}}"),
    ],
)
def test_a_phrase_inside_a_box_ends_at_the_box(reply, answer):
    """What follows the phrase is the answer up to the box's own closing brace, not to the end of the line."""
    assert extract_answer(reply) == answer
