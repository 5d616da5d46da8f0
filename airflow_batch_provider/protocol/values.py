"""Reading values from an output line: what a destination can store, or a refusal that names the
value (the caller turns it into the row's ``invalid_content`` error)."""

from __future__ import annotations

import math
import re
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with the characters no destination stores (NUL, lone surrogates) as U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def text(value: Any, what: str) -> str:
    """A string, made storable."""
    if not isinstance(value, str):
        raise TypeError(f"{what} is {type(value).__name__}, not a string")
    return storable(value)


def optional_text(value: Any, what: str) -> str | None:
    """A string or None."""
    return None if value is None else text(value, what)


def score(value: Any, what: str) -> float:
    """A finite float: a number, or (read tolerantly) a string of one. NaN, infinities and numbers
    beyond a float64 are refused: MariaDB cannot store them, and one rule holds for every destination."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{what} is {type(value).__name__}, not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a float64
        number = math.inf
    except ValueError:
        raise ValueError(f"{what} is {value!r:.60}, not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} is {value!r:.60}, not a finite number")
    return number


def optional_score(value: Any, what: str) -> float | None:
    """A finite float or None."""
    return None if value is None else score(value, what)


def integer(value: Any, what: str, *, bits64: bool = True) -> int | None:
    """An integer or None; ``bits64``: one an int64 column holds (a count, not a value kept as JSON)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} is {type(value).__name__}, not an integer")
    if bits64 and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{what} is {value}, beyond a 64-bit integer")
    return value
