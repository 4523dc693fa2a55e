"""Argument checks shared by the numpy-facing library functions: errors that name the argument."""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np


def fail(name: str, value: Any, requirement: str) -> NoReturn:
    raise ValueError(f"`{name}` {requirement}, got {value!r}.")


def is_int(value: Any) -> bool:
    """A Python or numpy integer, not a bool (True would pass isinstance(value, int))."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
