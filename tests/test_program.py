from hypothesis import given
from hypothesis import strategies as st

from rlrefine.solvers.program import LIMIT, calculate, run


def test_worked_lines_define_quantities_right_to_left():
    stated = {"Dan": 15, "bookstore": 19, "Mia": 11}
    text = "A1: Pia = Dan + 7\nA2: Ada = Pia * 2\nThe answer is: Hana = Ada + 8"
    assert run(text, 2, stated) == (["22", "44"], "52")
    assert run("A1: diner = bookstore * 3\nThe answer is: diner", 1, stated) == (["57"], "57")
    assert run("The answer is: Ava = Wes - 12 , Wes = Mia + 12", 0, stated) == ([], "11")
    assert run("A1: Pia = Dan + 7\nThe answer is: Pia", 1) == ([None], None)  # Dan: not a stated quantity here
    assert run("A1: Mia\nA2: A1\nThe answer is: 52", 2, stated) == (["11", "11"], "52")


def test_arithmetic_and_references():
    assert calculate("15 + 7") == 22 and calculate("(15 + 7) * 2 - 1") == 43 and calculate("2 * 3 + 4") == 10
    assert calculate("A1 * 2", {"A1": 22}) == 44 and calculate("A2 + 1", {"A1": 3}) is None
    assert calculate("8 / 2") == 4 and calculate("1 / 0") is None and calculate("10 ** 99") is None
    assert run("A1: 15 + 7\nA2: A1 * 2\nThe answer is: A2 + 8", 2) == (["22", "44"], "52")
    assert run("A1: unknown\nThe answer is: A1 + 8 .", 1) == ([None], None)
    assert run("garbage\nThe answer is: 7", 2) == ([None, None], "7")


@given(st.text(alphabet="0123456789A+-*/() .\n:Theanswrk", max_size=200), st.integers(0, 4))
def test_calculator_never_raises(text, n):
    subs, final = run(text, n)
    assert len(subs) == n  # an answer is None or a number's text, within the calculator's limit
    assert all(a is None or abs(float(a)) <= LIMIT for a in [*subs, final])
    value = calculate(text)
    assert value is None or (isinstance(value, float) and abs(value) <= LIMIT)


_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _combine(left, op, right):
    """An expression's text and its exact value, built together: no text is ever evaluated."""
    return f"({left[0]} {op} {right[0]})", _OPS[op](left[1], right[1])


_expressions = st.recursive(
    st.integers(0, 99).map(lambda n: (str(n), n)),
    lambda inner: st.builds(_combine, inner, st.sampled_from(sorted(_OPS)), inner),
    max_leaves=12,
)


@given(_expressions)
def test_calculator_agrees_with_exact_arithmetic(expression_and_value):
    expression, exact = expression_and_value
    assert calculate(expression) == (None if abs(exact) > LIMIT else float(exact))
