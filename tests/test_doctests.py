"""The examples in docstrings are tests too, and run with every pytest invocation (``pytest tests/`` included), not
only when pytest is started without paths."""

import doctest
import importlib
import warnings

import pytest
from helpers import ROOT


def _module(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("rlrefine", *parts) if parts[0] == "rewards" else parts)  # rewards/ installs as rlrefine.rewards


MODULES = sorted(
    {
        _module(p)
        for folder in ("rlrefine", "rewards")
        for p in (ROOT / folder).rglob("*.py")
        if p.name != "__init__.py" and "assets" not in p.parts and ">>>" in p.read_text()
    }
)


def test_modules_with_examples_are_found():
    assert {"rlrefine.core.grading", "rlrefine.core.numeric", "rlrefine.rewards.shape"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(name)
    failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert tried and not failed, f"{failed} of {tried} examples failed in {name}"
