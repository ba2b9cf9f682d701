"""The solver's written work, and the calculator that runs it safely (never ``eval`` of model text).

Solvers show their work as a short program, one line per sub-question and one for the question, the way
GSM8K annotates steps (``<<7*2=14>>``): the solver writes the arithmetic, a calculator computes it::

    A1: Pia = Dan + 7
    A2: Ada = Pia * 2
    The answer is: Hana = Ada + 8

A line is a list of definitions separated by "," and read right to left (``Ada = Pia * 2 , Pia = Dan + 7``
skips a step); the line's value is its first definition, also called ``A<i>``. Names are quantities: the
ones the story states outright (``Dan`` in "Dan has 15 apples ."; the calculator looks them up, as a tool)
and the ones defined on earlier lines. So the solver names relations and the calculator does arithmetic and
lookup: a tiny neural solver that had to copy the numbers itself reached 0.70 with gold decompositions
(the wrong stated number in every error seen), 0.9+ with the lookup. The symbolic solvers write it too.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_][\w]*)|([-+*/()]))")
_LINE = re.compile(r"^\s*A(\d+)\s*:\s*(.*)$")
_FINAL = re.compile(r"^\s*the\s+answer\s+is\s*:\s*(.*)$", re.IGNORECASE)
_DEFINED = re.compile(r"^([A-Za-z_]\w*)\s*=\s*(.+)$")  # "Pia = Dan + 7"
UNKNOWN = "unknown"
LIMIT = 10**12  # a value beyond this is not an answer
MAX_CHARS = 200


def calculate(expression: str, env: dict[str, float | None] | None = None) -> float | None:
    """Value of ``+ - * / ( )`` arithmetic over numbers and defined names; None if malformed or undefined.

    >>> calculate("(Pia + 3) * 2", {"Pia": 4})
    14.0
    >>> calculate("2 +* 3") is None, calculate("__import__('os')") is None
    (True, True)
    """
    env = env or {}
    tokens: list[tuple[str, str]] = []
    pos, text = 0, expression.strip()
    if not text or len(text) > MAX_CHARS:  # also bounds the parser's recursion on "((((..."
        return None
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            return None
        number, name, op = match.groups()
        tokens.append(("num", number) if number else ("name", name) if name else ("op", op))
        pos = match.end()
    value, rest = _sum(tokens, env)
    return value if rest == [] and value is not None and abs(value) <= LIMIT else None


def _sum(tokens, env):
    value, tokens = _product(tokens, env)
    while value is not None and tokens and tokens[0] in (("op", "+"), ("op", "-")):
        op = tokens[0][1]
        right, tokens = _product(tokens[1:], env)
        if right is None:
            return None, tokens
        value = value + right if op == "+" else value - right
    return value, tokens


def _product(tokens, env):
    value, tokens = _atom(tokens, env)
    while value is not None and tokens and tokens[0] in (("op", "*"), ("op", "/")):
        op = tokens[0][1]
        right, tokens = _atom(tokens[1:], env)
        if right is None or (op == "/" and right == 0):
            return None, tokens
        value = value * right if op == "*" else value / right
    return value, tokens


def _atom(tokens, env):
    if not tokens:
        return None, tokens
    kind, text = tokens[0]
    if kind == "num":
        return float(text), tokens[1:]
    if kind == "name":
        value = env.get(text)
        return (None if value is None else float(value)), tokens[1:]
    if text == "-":
        value, rest = _atom(tokens[1:], env)
        return (None if value is None else -value), rest
    if text == "(":
        value, rest = _sum(tokens[1:], env)
        if value is None or not rest or rest[0] != ("op", ")"):
            return None, rest
        return value, rest[1:]
    return None, tokens


def define(body: str, env: dict[str, float | None]) -> float | None:
    """Run one line's definitions right to left into ``env``; the value of its first one."""
    body = body.strip().rstrip(".").strip()
    if not body or body.lower().startswith(UNKNOWN):
        return None
    value = None
    for part in reversed([p.strip() for p in body.split(",")]):
        if defined := _DEFINED.match(part):
            value = env[defined.group(1)] = calculate(defined.group(2), env)
        else:
            value = calculate(part, env)
    return value


def number_text(value: float | None) -> str | None:
    """22.0 -> '22'; None stays None."""
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def run(text: str, n_subquestions: int, stated: dict[str, float] | None = None) -> tuple[list[str | None], str | None]:
    """Sub-answers (one per sub-question) and the final answer of a written program, with ``stated`` the
    quantities the story states (``world.stated_quantities``). Never raises."""
    env: dict[str, float | None] = dict(stated or {})
    final = None
    for line in (text or "").splitlines():
        if match := _LINE.match(line):
            env[f"A{match.group(1)}"] = define(match.group(2), env)
        elif match := _FINAL.match(line):
            final = define(match.group(1), env)
    subs = [number_text(env.get(f"A{i}")) for i in range(1, n_subquestions + 1)]
    return subs, number_text(final)
