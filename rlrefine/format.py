"""Deprecated path: ``rlrefine.format`` moved to ``rlrefine.core.format``; kept so plugins written for it work."""

import warnings

from rlrefine.core import format as _moved

warnings.warn(f"{__name__} moved to {_moved.__name__}; import it from there", DeprecationWarning, stacklevel=2)


def __getattr__(attr: str):
    return getattr(_moved, attr)
