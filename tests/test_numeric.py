"""The ``numeric`` metric's reader, ``rlrefine.core.numeric``: the one value an answer states, exactly.

Each table pins one rule of the module docstring at inputs where the rule (or a guard behind it) binds; every
expected value is worked out by hand, never read back from the code. ``parse_number`` shows the value itself;
``numeric_equal`` is used where the value has no finite decimal form."""

import signal
import threading
from decimal import Context, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlrefine.core import numeric
from rlrefine.core.grading import grade
from rlrefine.core.numeric import numeric_equal, parse_number

# 45 digits: more than sympy may see in one number (40), so only the exact path can read it
LONG = "123456789012345678901234567890123456789012345"
LONG_PLUS_ONE = "123456789012345678901234567890123456789012346"

DECORATED = [  # (answer, the value it states): what surrounds a number does not change it
    ("1.5 \\times 10^3", "1500"),  # LaTeX \times with no braces anywhere
    ("1.2 x 10^3", "1200"),
    ("1.2 * 10^3", "1200"),
    ("1.2X10^3", "1200"),
    ("90^\\circ", "90"),  # a LaTeX degree, no braces
    ("45° + 45°", "90"),  # a degree sign inside arithmetic: the sum, not the first term
    ("30° × 3", "90"),
    ("12 m²", "12"),  # a superscript on a unit is the unit's
    ("18 m^2", "18"),
    ("9.8 m/s^{2}", "9.8"),
    ("١٢ apples", "12"),  # Arabic-Indic digits
    ("۱۲۳ apples", "123"),  # Extended Arabic-Indic (Persian) digits
    ("approx. 12", "12"),  # an abbreviation's period ends no sentence
    ("Approx. 12", "12"),
    ("ca. 40 km", "40"),
    ("~12", "12"),  # an approximation hedge
    ("~50%", "50"),
    ("*12*", "12"),  # markdown emphasis
    ("$18 / day", "18"),  # a rate's "/ day"
    ("12)", "12"),  # a bracket that closes nothing
    ("[12]", "12"),
    ("\\boxed{(-5)}", "-5"),
    ("1.5 million", "1500000"),
    ("2 thousand", "2000"),
    ("1 234 567", "1234567"),
    ("-0.1234567890123456789 m", "-0.1234567890123456789"),  # every digit, none rounded away
    ("+0.1234567890123456789 m", "0.1234567890123456789"),
]


@pytest.mark.parametrize("answer, value", DECORATED)
def test_units_signs_and_notation_around_a_number_keep_its_value(answer, value):
    assert parse_number(answer) == Decimal(value)


ARITHMETIC = [  # (answer, its value): a run of arithmetic states its result
    ("(1 + 2) × (3 + 4)", "21"),
    ("3/4 + 1", "1.75"),  # one "/" is a division, even with more terms after it
    ("1/2 + 1/4", "0.75"),
    ("5/1", "5"),
    ("1,200 + 300", "1500"),  # thousands separators inside arithmetic
    ("1.5 million × 2", "3000000"),
    ("2e-7 × 5", "0.000001"),  # scientific notation inside arithmetic
    ("0.0000001 + 1", "1.0000001"),
    ("1e3/8", "125"),
    ("\\frac{3}{1e3}", "0.003"),
    ("2^{1e1}", "1024"),
    ("\\sqrt 4", "2"),  # a command with its argument, not the bare 4
    ("\\sqrt{16}", "4"),
    ("2^{10}", "1024"),
    ("\\dfrac{3}{4}", "0.75"),
]


@pytest.mark.parametrize("answer, value", ARITHMETIC)
def test_arithmetic_states_its_result(answer, value):
    assert parse_number(answer) == Decimal(value)


EQUATIONS = [  # (answer, value): an equation states its right-hand side; its left-hand side is no candidate
    ("2/3 of 12 = 8", "8"),
    ("12 apples − 3 apples = 9 apples", "9"),  # words that join no clause stay in the left-hand side
    ("4 @ $3 = $12", "12"),  # so does a separator other than , ; :
    ("x=12", "12"),
    ("3×4=6×2=12", "12"),  # a chain: only the last side
    ("3 × 4 = 6 × 2 = 12", "12"),
    ("= 5 + 7 = 12", "12"),  # a statement that opens with "="
    ("= 5 + 7 = 12 apples", "12"),
    ("(2 + 3 = 5)", "5"),  # the clause starts at the bracket
    ("22/7 ≈ 3.14", "3.14"),  # an approximation sign is an equation too
    ("\\pi \\approx 3.14", "3.14"),
]


@pytest.mark.parametrize("answer, value", EQUATIONS)
def test_an_equation_states_its_right_hand_side(answer, value):
    assert parse_number(answer) == Decimal(value)


NO_VALUE = [  # answers that state no one value: no credit, whatever the gold
    "x = 12, y = 13",  # a comma starts a new clause: two equations, two values
    "x = 12; y = 13",
    "13 [3 + 9 = 12]",  # a bracket starts a clause: 13 stays a candidate beside 12
    "13 (3 + 9 = 12)",
    "7 9",  # two numbers side by side
    "1 1/2",  # a mixed number is two numbers here, not 1.5
    "5 - 6",  # a range, spaced or not
    "5-6",
    "2024-05-01",  # a date
    "5/1/2024",
    "50% + 10",  # a percentage inside arithmetic is ambiguous
    "20 × 50%",
    "12²",  # a superscript digit is no digit
    "1) 12",  # a list marker and a value
    "1/3",  # no finite decimal form
    "1/6",
    "eight",
    "",
]


@pytest.mark.parametrize("answer", NO_VALUE)
def test_an_answer_with_several_or_no_candidates_states_no_value(answer):
    assert parse_number(answer) is None


def test_long_numbers_stay_exact_with_a_sign_or_brackets():
    """A single number, signed or bracketed, takes the exact path: its 45 digits never reach sympy (which sees at
    most 40) and none is rounded away."""
    for answer in (f"-{LONG} apples", f"+{LONG} apples", f"\\boxed{{({LONG})}}", f"(({LONG}))"):
        gold = f"-{LONG}" if answer.startswith("-") else LONG
        wrong = f"-{LONG_PLUS_ONE}" if answer.startswith("-") else LONG_PLUS_ONE
        assert numeric_equal(answer, gold), answer
        assert not numeric_equal(answer, wrong), answer


def test_exponents_beyond_a_thousand_are_no_value():
    """The bound that keeps "1e99999" from building a huge integer binds exactly at 10^±1000."""
    assert numeric_equal("1e1000", "10e999") and numeric_equal("1e-1000", "0.1e-999")
    assert not numeric_equal("1e1001", "10e1000") and not numeric_equal("1e-1001", "0.1e-1000")
    assert parse_number("1e-1000 m") == Decimal("1e-1000")


def test_latex_reaches_sympy_only_when_bounded():
    """_safe_latex's limits, each at the value where it binds: 200 characters, 40 digits in a number, one power
    with an exponent of at most three digits, and only \\frac, \\sqrt and \\pi among commands."""
    assert numeric_equal("10" + "+1" * 99, "109")  # 200 characters: read
    assert parse_number("100" + "+1" * 99) is None  # 201: refused
    assert numeric_equal("1" * 40 + " + 1", "1" * 39 + "2")  # a 40-digit number: read
    assert parse_number("1" * 41 + " + 1") is None  # 41 digits: refused
    assert parse_number("2^{999} / 2^{998}") is None  # two powers
    assert parse_number("2^{3} + 3^{2}") is None
    assert parse_number("2^{1000}") is None  # a four-digit exponent
    for command in ("\\binom{4}{2}", "\\sum_{k=1}^{3} k", "\\log_2 8", "\\Gamma(5)"):
        assert parse_number(command) is None, command


SHORTEST = [  # (answer, str of parse_number): the exact value in its shortest decimal form
    ("0.5 kg", "0.5"),
    ("1/5", "0.2"),
    ("3/8", "0.375"),
    ("0.04 kg", "0.04"),
    ("22/7 ≈ 3.14", "3.14"),
    ("0.0000001 + 1", "1.0000001"),
    ("1e-30 m", "1E-30"),
    ("1e-1000 m", "1E-1000"),
    ("1234567890.123456789 m", "1234567890.123456789"),
    ("-7/4", "-1.75"),
]


@pytest.mark.parametrize("answer, shown", SHORTEST)
def test_parse_number_gives_the_shortest_exact_decimal(answer, shown):
    assert str(parse_number(answer)) == shown


def test_parse_number_reads_non_text_values():
    assert parse_number(None) is None
    assert parse_number(12) == Decimal(12)
    assert parse_number(Decimal("1.5")) == Decimal("1.5")
    assert parse_number(-2.25) == Decimal("-2.25")


IRRATIONAL = [  # (prediction, gold, equal): values with no exact Fraction are compared by math-verify
    ("\\frac{(\\sqrt{2}+1)(\\sqrt{2}-1)}{2}", "0.5", True),  # irrational-looking, rational value
    ("\\sqrt{3+2\\sqrt{2}} - \\sqrt{2}", "1", True),
    ("1", "(\\sqrt{2}+1)(\\sqrt{2}-1)", True),
    ("2\\pi", "\\pi \\times 2", True),
    ("\\sqrt{8}", "2\\sqrt{2}", True),
    ("\\sqrt{2}", "\\sqrt{3}", False),
    ("2\\pi", "2", False),
    ("-2\\pi", "-2", False),
    ("\\pi", "3.141592653589793", False),  # exact: a close decimal is not pi
    ("\\sqrt{2}", "1.4142135623730951", False),
]


def test_irrational_values_compare_exactly_off_the_main_thread():
    """TRL grades on a worker thread, where a signal-based timeout cannot run: the symbolic comparison must work
    there and give the exact answer."""
    numeric._value.cache_clear()
    numeric._math_value.cache_clear()
    results = []
    worker = threading.Thread(
        target=lambda: results.append([numeric_equal(p, g) for p, g, _ in IRRATIONAL]), daemon=True
    )
    worker.start()
    worker.join(60)
    assert results == [[equal for _, _, equal in IRRATIONAL]]


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="no SIGALRM here")
def test_symbolic_comparison_leaves_the_callers_alarm_alone():
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        signal.alarm(1000)
        assert numeric_equal("2\\pi", "\\pi \\times 2")
        assert signal.alarm(0) > 0  # still pending: the comparison did not cancel it
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_comparison_math_verify_cannot_finish_is_no_match(monkeypatch):
    parse, _, config = numeric._math_verify()

    def broken(*args, **kwargs):
        raise RuntimeError("math-verify failed")

    monkeypatch.setattr(numeric, "_math_verify", lambda: (parse, broken, config))
    assert numeric_equal("2\\pi", "\\pi \\times 2") is False


_DIGITS = {
    "ascii": "0123456789",
    "arabic-indic": "٠١٢٣٤٥٦٧٨٩",
    "devanagari": "०१२३४५६७८९",
    "fullwidth": "０１２３４５６７８９",
}


@settings(max_examples=60, deadline=None)
@given(
    st.integers(-(10**12), 10**12),
    st.sampled_from(sorted(_DIGITS)),
    st.sampled_from(["{} apples", "${}", "about {}", "x = {}", "\\boxed{{{}}}", "({})", "**{}**", "{} km^2"]),
)
def test_any_script_and_decoration_states_the_integer_written(n, script, template):
    digits = str(abs(n)).translate(str.maketrans("0123456789", _DIGITS[script]))
    answer = template.format(("-" if n < 0 else "") + digits)
    assert parse_number(answer) == n


_SCALE_WORDS = [("hundred", 100), ("Thousand", 10**3), ("million", 10**6), ("BILLION", 10**9), ("trillion", 10**12)]


@settings(max_examples=60, deadline=None)
@given(st.decimals(0, 1000, places=3), st.sampled_from(_SCALE_WORDS))
def test_a_scale_word_multiplies_exactly_in_any_case(d, scale):
    word, factor = scale
    assert parse_number(f"{d} {word} dollars") == d * factor


@pytest.mark.parametrize("text", ["1½ cups", "2¾", "½", "12² apples", "12 Ⅻ", "Ⅻ 12", "12 ③", "③ boxes"])
def test_numerals_that_are_not_plain_digits_state_no_value(text):
    """Vulgar fractions, superscripts, Roman and circled numerals are numbers but not digits: reading the digits
    around them would give credit for the wrong answer ('1½' is not 1), so the text states no value."""
    assert parse_number(text) is None and grade(text, "1") == 0.0 and grade(text, "2") == 0.0


@given(st.integers(-(10**80), 10**80), st.integers(0, 60))
def test_parse_number_is_exact_at_any_number_of_digits(unscaled, places):
    """The value as written, digit for digit, past the default decimal context's 28 digits too."""
    text = f"{'-' if unscaled < 0 else ''}{abs(unscaled) // 10**places}.{abs(unscaled) % 10**places:0{places}d}"
    expected = Decimal(unscaled).scaleb(-places, context=Context(prec=200))
    assert parse_number(text if places else str(unscaled)) == expected


@pytest.mark.parametrize("text", ["१२ apples", "๑๒", "১২", "١٢", "12"])
def test_decimal_digits_of_any_script_read_as_digits(text):
    """Devanagari, Thai, Bengali, Arabic-Indic: a decimal digit is the digit, whatever its script."""
    assert parse_number(text) == Decimal(12)
