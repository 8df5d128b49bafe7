"""Token quantities written the way people write them: 20T, 3.6e12, 18.9B, 512M, 6_029_312."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_SUFFIXES = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12, "P": 10**15}


def parse_count(value: object) -> int:
    """Parse a non-negative integer count; suffixes are decimal (1B = 1e9) and the result must be whole."""
    if isinstance(value, bool):
        raise ValueError(f"expected a count like 20T, 3.6e12 or 512M, got {value!r}")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        scale = 1
        if text and text[-1].upper() in _SUFFIXES:
            scale = _SUFFIXES[text[-1].upper()]
            text = text[:-1]
        try:
            number = Decimal(text) * scale
        except InvalidOperation:
            raise ValueError(f"expected a count like 20T, 3.6e12 or 512M, got {value!r}") from None
    else:
        raise ValueError(f"expected a count like 20T, 3.6e12 or 512M, got {value!r}")
    if not number.is_finite() or number < 0:
        raise ValueError(f"expected a non-negative count, got {value!r}")
    if number != number.to_integral_value():
        raise ValueError(f"expected a whole number of tokens, got {value!r} = {number}")
    return int(number)


def format_count(n: int | float, digits: int = 3) -> str:
    """Human form of a count (12.0T, 6.03M); exact integers stay available in the JSON."""
    n = float(n)
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.{digits}g}{suffix}"
    return f"{n:.{digits}g}" if n != int(n) else str(int(n))


TokenCount = Annotated[int, BeforeValidator(parse_count), PlainSerializer(int)]
