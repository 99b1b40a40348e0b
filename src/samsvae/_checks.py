"""Argument checks at the public boundary: each names the argument and what it accepts."""

from __future__ import annotations

import math
import numbers
from typing import Any


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> None:
    """Refuse ``value`` unless it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        msg = f"{name}={value!r} is not supported; choose one of {list(choices)}."
        raise ValueError(msg)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


#: Largest count an argument may ask for (more particles, cells or steps than fit any machine).
LARGEST_COUNT = 2**31 - 1


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> None:
    """Refuse anything but an integer from ``minimum`` to :data:`LARGEST_COUNT` (``True`` is not
    an integer here)."""
    if not _is_integer(value) or value < minimum:
        msg = f"{name}={value!r} must be an integer >= {minimum}."
        raise ValueError(msg)
    if value > LARGEST_COUNT:
        msg = f"{name}={value!r} is larger than any run can use; it must be at most 2**31 - 1."
        raise ValueError(msg)


def check_positive(name: str, value: Any) -> None:
    """Refuse anything but a finite real number above 0."""
    if not _is_real(value) or not math.isfinite(value) or not value > 0:
        msg = f"{name}={value!r} must be a finite number > 0."
        raise ValueError(msg)


def check_fraction(name: str, value: Any, *, one_allowed: bool = False) -> None:
    """Refuse anything but a real number above 0 and below 1 (or equal to 1 if allowed)."""
    if not _is_real(value) or not 0 < value <= 1 or (value == 1 and not one_allowed):
        upper = "in (0, 1]" if one_allowed else "strictly between 0 and 1"
        msg = f"{name}={value!r} must be a number {upper}."
        raise ValueError(msg)


def check_seed(value: Any, *, optional: bool = True) -> None:
    """Refuse a seed torch cannot take: an integer in [0, 2**63), or ``None`` if ``optional``."""
    if value is None and optional:
        return
    if not _is_integer(value) or not 0 <= value < 2**63:
        accepted = "None or an integer" if optional else "an integer"
        msg = f"seed={value!r} must be {accepted} in [0, 2**63)."
        raise ValueError(msg)


#: Largest fixed library size: far above any cell's total count (1e4 is the usual reference),
#: and the expected-transform table grows with it (about 1 GB at 1e8 counts).
LARGEST_LIBRARY_SIZE = 1e8


def check_library_size(value: Any) -> None:
    """Refuse a library size that is neither ``"data"`` nor a number in (0, 1e8]."""
    if isinstance(value, str) and value == "data":
        return
    if not _is_real(value) or not 0 < value <= LARGEST_LIBRARY_SIZE:
        msg = (
            f"library_size={value!r} must be 'data' (library sizes drawn from the training "
            f"control cells) or a number of counts > 0 and at most {LARGEST_LIBRARY_SIZE:g}."
        )
        raise ValueError(msg)
