"""One stated value, read exactly from an answer: the ``numeric`` metric of ``rlrefine.core.grading``.

The first sentence of the answer must state one value. Units, words, currency signs, thousands separators (``1,234``, ``1 234 567``, LaTeX ``1{,}234``), a
trailing period, Unicode minus, ``$...$``/``\\(...\\)``/boxes, and "x =" or "3 × 4 =" before the value are all
fine: an equation states its right-hand side, and its left-hand side (back to the start of its clause) is no
candidate. A percentage is the number as written ("50%" is 50, not 0.5); "1.5 million" is 1500000; approximation
hedges ("about", "approximately", "~") do not change the value. No credit when the answer holds more than one
candidate ("13, not 12", "7 or 9", "between 5 and 6", "12 apples and 3 pears", a date or range "2024-05-01",
"5-6"), a bound or negation ("at least 12", "not 12", "more than 12", "±"), or no digit-written number
("eight"). Candidates that agree ("12 (12 apples)", "3 × 4 = 12, so 12") count once. A value is never the last
number of a longer answer. Plain numbers take a fast exact path (``Decimal``/``Fraction``); fractions and LaTeX
(``3/4``, ``\\frac{3}{4}``, ``1.5 \\times 10^{3}``, ``\\sqrt{2}``) go to math-verify, through a whitelist of
arithmetic LaTeX that keeps sympy's work bounded, so math-verify runs with its ``signal.alarm`` timeouts off:
grading works in any thread (TRL runs async rewards off the main thread) and never cancels a caller's alarm.
Comparison is exact: 0.333 is not 1/3; 8.0 is 8; 3/4 is 0.75.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction
from functools import lru_cache

_PLAIN = re.compile(r"[ \t]*([-+]?(?:\d+(?:\.\d*)?|\.\d+))[ \t]*")
_UNICODE = str.maketrans(
    {c: "-" for c in "\u2212\u2010\u2011\u2012\u2013\u2014\u2015\ufe63\uff0d"}
    | {c: " " for c in "\u00a0\u2007\u2009\u200a\u202f\u2002\u2003\u2004\u2005\u2006\u3000"}
    | {"\u2044": "/", "\u2215": "/", "\u2019": "'", "\u00d7": "×", "\u22c5": "·"}
)
_LATEX_REWRITES = (
    (re.compile(r"\\(?:text[a-z]*|math(?:rm|it))\s*\{\s*([A-Za-z]+)\s*\}\s*\^\s*(?:\{\s*-?\d\s*\}|\d)"), r" \1 "),
    (re.compile(r"\\[$%]"), lambda m: m.group()[1]),
    (re.compile(r"\{,\}"), ","),
    (re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ\b|\\degree\b|°"), " "),
    (re.compile(r"\\(?:boxed|fbox|text[a-z]*|math[a-z]*|mbox|operatorname|displaystyle|[bB]igg?[lr]?)\b"), " "),
    (re.compile(r"\\(?:left|right)\b"), ""),
    (re.compile(r"\\[,;:! ]|\\q?quad\b"), ""),
    (re.compile(r"\\[()\[\]]"), " "),
    (re.compile(r"\\[dtc]frac\b"), r"\\frac"),
    (re.compile(r"\\approx\b|\\simeq\b|\\sim\b"), "≈"),
    (re.compile(r"\\(?:times|cdot)\b"), "×"),
    (re.compile(r"\\div\b"), "÷"),
)
_UNIT_POWER = re.compile(r"(?<![\\A-Za-z])([A-Za-z]+)\s*(?:\^\s*(?:\{\s*-?\d\s*\}|-?\d(?!\d))|[²³])")  # m^2, s^{-1}
_TIMES_TEN = re.compile(r"(?<=\d)\s*[xX*]\s*10\s*\^")  # "1.2 x 10^3"
_UNITS = re.compile(r"[$€£¥₹₽₩¢`]|\*\*|__")
_BOUND_SYMBOLS = re.compile(r"[<>≤≥≠±∓≦≧≶≷]|\\(?:le|ge|leq|geq|lt|gt|ne|neq|pm|mp|leqslant|geqslant)\b")
_SENTENCE_END = re.compile(r"[.!?](?=\s|\Z)")
_ABBREVIATIONS = {"approx", "ca", "vs", "e.g", "i.e", "est", "resp", "appr"}
_NOT_A_VALUE_WORDS = {
    "not", "never", "neither", "nor", "or", "either", "except", "excluding", "between", "nearly", "almost",
    "cannot", "unknown", "undefined", "range", "ranges", "minimum", "maximum",
}  # fmt: skip
_NOT_A_VALUE_PAIRS = re.compile(
    r"\b(?:(?:more|less|fewer|greater|larger|smaller|higher|lower|other)\s+than|at\s+(?:least|most)|up\s+to)\b"
    r"|n't\b",
    re.IGNORECASE,
)
_TOKEN = re.compile(
    r"(?P<num>(?P<digits>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d{1,3}(?: \d{3})+(?![\d/])|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
    r"|\.\d+(?:[eE][-+]?\d+)?)"
    r"(?P<scale> (?i:hundred|thousand|million|billion|trillion)\b)?"
    r"(?P<pct> ?(?:%|(?i:per ?cent)\b))?)"
    r"|(?P<cmd>\\[A-Za-z]+)"
    r"|(?P<word>[^\W\d_][\w']*)"
    r"|(?P<math>[-+*/^×÷·=≈~()\[\]{}])"
    r"|(?P<space>\s+)"
    r"|(?P<sep>.)",
    re.DOTALL,
)
_CLAUSE_WORDS = {
    "and", "so", "thus", "hence", "therefore", "then", "because", "since", "as", "which", "that", "where", "when",
    "given", "from", "but", "is", "are", "was", "were", "equals", "gives", "giving", "yields", "makes", "means",
}  # fmt: skip
_TRAILING_OPERATORS = {"=", "≈", "/", "*", "×", "·", "÷", "+", "-", "^"}
_LEADING_OPERATORS = {"=", "≈", "/", "*", "×", "·", "÷", "^"}
_SCALES = {"hundred": 100, "thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_MATH_COMMANDS = {"\\frac", "\\sqrt", "\\pi"}
_OPEN, _CLOSE = "([{", ")]}"
_MAX_ANSWER_CHARS = 2000
_MAX_CANDIDATES = 4

Value = object  # a Fraction (an exact rational) or, for an irrational value, a sympy number


def _normalise(text: str) -> str | None:
    """Plain-text numerals: one kind of minus and space, LaTeX wrappers and spacing gone; None for characters
    that would be misread (superscripts, vulgar fractions) outside a unit ("m²")."""
    if "\\" in text or "{" in text or "°" in text:
        for pattern, replacement in _LATEX_REWRITES:
            text = pattern.sub(replacement, text)
    if not text.isascii():
        text = text.translate(_UNICODE)
    if "^" in text or "x" in text or "X" in text or not text.isascii():
        text = _UNIT_POWER.sub(r"\1 ", _TIMES_TEN.sub("×10^", text))
    if not text.isascii() and any(unicodedata.category(ch) in ("No", "Nl") for ch in text):
        return None  # '12²', '1½', 'Ⅻ': numerals that are not digits (a digit of any script reads as itself)
    return _UNITS.sub(" ", text)


def _first_sentence(text: str) -> str:
    for m in _SENTENCE_END.finditer(text):
        word = re.search(r"([\w.]*)$", text[: m.start()]).group(1).lower()
        if word not in _ABBREVIATIONS:
            return text[: m.start()]
    return text


def _decimal(tok: re.Match) -> Decimal | None:
    """A number token's value: separators dropped, "million" applied, a percentage as written."""
    try:
        value = Decimal(tok.group("digits").replace(",", "").replace(" ", ""))
    except InvalidOperation:
        return None
    if abs(value.adjusted()) > 1000:
        return None  # "1e99999": no answer, and its integer would be huge
    if tok.group("scale"):
        value *= _SCALES[tok.group("scale").strip().lower()]
    return value


def _number(tok: re.Match) -> Fraction | None:
    value = _decimal(tok)
    return None if value is None else Fraction(value)


def _split_unpaired(toks: list[re.Match]) -> list[list[re.Match]]:
    """A run cut at brackets that close nothing or are never closed in it: "12 (12" is "12" and "12"."""
    stack, unpaired = [], set()
    for i, t in enumerate(toks):
        if t.group() in _OPEN:
            stack.append(i)
        elif t.group() in _CLOSE:
            if stack and toks[stack[-1]].group() == _OPEN[_CLOSE.index(t.group())]:
                stack.pop()
            else:
                unpaired.add(i)
    unpaired.update(stack)
    pieces: list[list[re.Match]] = [[]]
    for i, t in enumerate(toks):
        if i in unpaired:
            pieces.append([])
        else:
            pieces[-1].append(t)
    return pieces


def _trim(toks: list[re.Match]) -> list[re.Match]:
    """Drop spaces, dangling operators, a leading "~", and brackets around the whole run from both ends."""
    while toks:
        first, last = toks[0].group(), toks[-1].group()
        if toks[0].lastgroup == "space" or first == "~":
            toks = toks[1:]
        elif toks[-1].lastgroup == "space" or last in _TRAILING_OPERATORS:
            toks = toks[:-1]  # "18/" of "$18/day", "5-" of "5-year"
        elif first in _LEADING_OPERATORS:
            toks = toks[1:]
        elif len(toks) > 2 and first in _OPEN and last == _CLOSE[_OPEN.index(first)] and _balanced(toks[1:-1]):
            toks = toks[1:-1]
        else:
            break
    return toks


def _balanced(toks: list[re.Match]) -> bool:
    depth = 0
    for t in toks:
        depth += (t.group() in _OPEN) - (t.group() in _CLOSE)
        if depth < 0:
            return False
    return depth == 0


def _candidate_runs(text: str) -> list[list[re.Match]] | None:
    """The runs of numbers, operators and LaTeX that could each be the answer, or None when a word rules the
    answer out. Words and separators end a run; so does a "(" right after a number ("12 (3 × 4)" is a remark,
    not a product). The left-hand side of an equation, back to the start of its clause (or an opening bracket),
    is no candidate: in "2/3 of 12 = 8" only 8 is; in "x = 12 and y = 13" and "13 (3 + 9 = 12)" both numbers are."""
    toks = list(_TOKEN.finditer(text))
    keep, clause = [True] * len(toks), 0
    for i, tok in enumerate(toks):
        kind, word = tok.lastgroup, tok.group().lower()
        if kind == "word" and word in _NOT_A_VALUE_WORDS:
            return None
        if (kind == "sep" and word in ",;:") or (kind == "word" and word in _CLAUSE_WORDS) or word in ("(", "["):
            clause = i + 1
        elif word in ("=", "≈"):
            keep[clause : i + 1] = [False] * (i + 1 - clause)
            clause = i + 1
    runs: list[list[re.Match]] = [[]]
    for tok, kept in zip(toks, keep):
        kind = tok.lastgroup
        if not kept or kind in ("word", "sep"):
            runs.append([])
            continue
        solid = [t for t in runs[-1] if t.lastgroup != "space"]
        if tok.group() == "(" and solid and solid[-1].lastgroup == "num":
            runs.append([])
        runs[-1].append(tok)
    return [piece for run in runs for piece in _split_unpaired(run) if any(t.lastgroup == "num" for t in piece)]


def _run_value(toks: list[re.Match]) -> Value | None:
    """The value of one run of numbers, operators and LaTeX between words; None when it is not one value."""
    toks = _trim(toks)
    solid = [t for t in toks if t.lastgroup != "space"]
    nums = [i for i, t in enumerate(solid) if t.lastgroup == "num"]
    if not nums:
        return None
    if len(solid) == 1 or (len(solid) == 2 and solid[0].group() in ("-", "+") and nums == [1]):
        value = _number(solid[nums[0]])
        return -value if value is not None and solid[0].group() == "-" else value
    for a, b in zip(nums, nums[1:]):
        between = "".join(t.group() for t in solid[a + 1 : b])
        if between in ("", "-") or (between == "/" and b + 2 < len(solid) and solid[b + 1].group() == "/"):
            return None  # "7 9", a range "5-6" or date "2024-05-01", a date "5/1/2024"
        if solid[a].group("pct") or solid[b].group("pct"):
            return None  # a percentage inside arithmetic: ambiguous
    numbers = {i: _decimal(t) for i, t in enumerate(toks) if t.lastgroup == "num"}
    if None in numbers.values():
        return None
    return _math_value("".join(format(numbers[i], "f") if i in numbers else t.group() for i, t in enumerate(toks)))


def _safe_latex(latex: str) -> bool:
    """Only bounded arithmetic reaches sympy: known commands, one small exponent, short numbers."""
    if len(latex) > 200 or any(len(d) > 40 for d in re.findall(r"\d+", latex)):
        return False
    if set(re.findall(r"\\[A-Za-z]+", latex)) - _MATH_COMMANDS:
        return False
    powers = latex.count("^")
    return powers == 0 or (
        powers == 1 and re.search(r"\^\s*(?:\{\s*[-+]?\d{1,3}\s*\}|\d{1,3}(?![\d.]))", latex) is not None
    )


@lru_cache(maxsize=1)
def _math_verify():
    """math-verify, imported on first use (sympy is slow to import), with its no-timeout warning silenced:
    we bound the input instead (``_safe_latex``) because signal-based timeouts only work in the main thread."""
    from math_verify import LatexExtractionConfig, parse, verify

    class _NoTimeoutWarning(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not record.getMessage().startswith("Timeout is disabled")

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_NoTimeoutWarning())
    return parse, verify, LatexExtractionConfig(boxed_match_priority=-1)


@lru_cache(maxsize=4096)
def _math_value(latex: str) -> Value | None:
    if not _safe_latex(latex):
        return None
    try:
        import sympy

        parse, _, config = _math_verify()
        found = parse(
            f"${latex}$",
            extraction_config=[config],
            fallback_mode="no_fallback",
            extraction_mode="first_match",
            parsing_timeout=None,
        )
        value = found[0] if found else None
        if not isinstance(value, sympy.Expr):
            return None
        value = value.doit()
        if not value.is_number or value.free_symbols or not value.is_finite or not value.is_real:
            return None
        if value.is_Rational:
            return Fraction(int(value.p), int(value.q))
        if value.is_Float:
            return Fraction(Decimal(str(value)))
        return value
    except Exception:  # noqa: BLE001 - arbitrary text: any parser failure is "no value"
        return None


@lru_cache(maxsize=8192)
def _value(text: str) -> Value | None:
    """The one value ``text`` states (see the module docstring), or None."""
    plain = _PLAIN.fullmatch(text)
    if plain:
        return Fraction(Decimal(plain.group(1)))
    if len(text) > _MAX_ANSWER_CHARS:
        return None
    text = _normalise(text)
    if text is None:
        return None
    text = _first_sentence(text)
    if _BOUND_SYMBOLS.search(text) or _NOT_A_VALUE_PAIRS.search(text):
        return None
    runs = _candidate_runs(text)
    if runs is None:
        return None
    if not runs or len(runs) > _MAX_CANDIDATES:
        return None
    values = [_run_value(r) for r in runs]
    if values[0] is None or any(not isinstance(v, Fraction) or v != values[0] for v in values[1:]):
        return None
    return values[0]


def parse_number(text: object) -> Decimal | None:
    """The one number ``text`` states ("$1,234.50" -> 1234.50), exact; None when it states none, several, or a
    value with no finite decimal form (1/3).

    >>> parse_number("The answer is: $1,234."), parse_number("13, not 12")
    (Decimal('1234'), None)
    """
    value = _value(text if isinstance(text, str) else "" if text is None else str(text))
    if not isinstance(value, Fraction):
        return None
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return None
    places = max(twos, fives)
    digits = value.numerator * 10**places // value.denominator
    with localcontext() as exact:  # however many digits (the default context keeps 28)
        exact.prec = len(str(abs(digits))) + 1
        return Decimal(digits).scaleb(-places)


def numeric_equal(prediction: str, gold: str) -> bool:
    """Whether two answers state the same one value (exactly; math-verify for irrational ones)."""
    if prediction == gold and _PLAIN.fullmatch(gold):
        return True
    p, g = _value(prediction), _value(gold)
    if p is None or g is None:
        return False
    if isinstance(p, Fraction) and isinstance(g, Fraction):
        return p == g
    try:
        import sympy

        _, verify, _ = _math_verify()
        as_sympy = [sympy.Rational(v.numerator, v.denominator) if isinstance(v, Fraction) else v for v in (g, p)]
        return bool(verify(*as_sympy, timeout_seconds=None))
    except Exception:  # noqa: BLE001
        return False
