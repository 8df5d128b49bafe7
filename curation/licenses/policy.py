"""Is a license expression permissive? Pure functions over ScanCode license keys, no index needed.

An expression is permissive when every term of an AND is, at least one option of an OR is, and for `X WITH Y`
both the license X and the exception Y are on the allow-list (an exception such as Commons Clause can restrict).
Anything else is a drop, and the verdict says which keys blocked it, so the decisions table can show why.

Two kinds of keys are not licenses and are taken out before a verdict (see `strip_non_grants`):
- references such as `unknown-license-reference` ("see the LICENSE file"), which point at the license files the
  resolution already looks at;
- neutral keys such as `warranty-disclaimer`, which neither grant nor restrict anything.
An expression made only of those says nothing about the license: the file falls back to its directory's license.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from license_expression import AND, OR, BaseSymbol, LicenseWithExceptionSymbol, Licensing

# ScanCode keys that point at another file instead of naming a license.
REFERENCE_KEYS = frozenset({"unknown-license-reference"})

# Reasons a file is dropped by the license stage; one word each so the audit can group by them.
REASON_NOT_PERMISSIVE = "license_not_permissive"
REASON_UNKNOWN = "license_unknown"
REASON_NO_LICENSE = "no_license"
REASON_TIMEOUT = "license_timeout"
REASON_ERROR = "license_error"
REASON_FILE_TOO_LARGE = "license_file_too_large"
REASON_FILE_BINARY = "license_file_binary"


@functools.lru_cache(maxsize=1)
def _licensing() -> Licensing:
    return Licensing()


@functools.lru_cache(maxsize=65536)
def parse_expression(expression: str):
    """Parse a ScanCode expression (keys need not be known); cached because the same few recur constantly."""
    return _licensing().parse(expression)


def expression_keys(expression: str) -> list[str]:
    """Every license and exception key in an expression, in order of appearance, without repeats."""
    return list(dict.fromkeys(_licensing().license_keys(parse_expression(expression))))


def _render(node) -> str:
    return str(node)


def combine_and(expressions: Iterable[str | None]) -> str | None:
    """`a AND b AND ...` with nested ANDs flattened and repeated terms dropped; None when there is nothing."""
    terms: dict[str, object] = {}

    def add(node) -> None:
        if isinstance(node, AND):
            for arg in node.args:
                add(arg)
        else:
            terms.setdefault(_render(node), node)

    for expression in expressions:
        if expression:
            add(parse_expression(expression))
    if not terms:
        return None
    if len(terms) == 1:
        return next(iter(terms))
    return _render(AND(*terms.values()))


def strip_non_grants(expression: str | None, ignorable: frozenset[str]) -> tuple[str | None, bool]:
    """Remove reference and neutral keys; returns (what is left or None, whether a reference was removed).

    `mit AND unknown-license-reference` -> (`mit`, True); `warranty-disclaimer` -> (None, False). An OR with a
    removed option keeps its other options (the removed one granted nothing to choose).
    """
    if not expression:
        return None, False
    found_reference = False

    def walk(node):
        nonlocal found_reference
        if isinstance(node, LicenseWithExceptionSymbol):
            return node
        if isinstance(node, BaseSymbol):
            key = node.key
            if key in REFERENCE_KEYS:
                found_reference = True
                return None
            return None if key in ignorable else node
        kept = [k for k in (walk(a) for a in node.args) if k is not None]
        if not kept:
            return None
        if len(kept) == 1:
            return kept[0]
        return type(node)(*kept)

    remaining = walk(parse_expression(expression))
    return (_render(remaining) if remaining is not None else None), found_reference


@dataclass(frozen=True)
class Verdict:
    """Whether an expression may be kept and, if not, the keys that decided it and the reason to record."""

    permissive: bool
    blocking_keys: tuple[str, ...] = ()
    reason: str | None = None


def _evaluate(node, allowed: frozenset[str]) -> tuple[bool, list[str]]:
    if isinstance(node, LicenseWithExceptionSymbol):
        base, exception = node.license_symbol.key, node.exception_symbol.key
        blocking = [k for k in (base, exception) if k not in allowed]
        return not blocking, blocking
    if isinstance(node, BaseSymbol):
        return (True, []) if node.key in allowed else (False, [node.key])
    results = [_evaluate(arg, allowed) for arg in node.args]
    if isinstance(node, OR):
        if any(ok for ok, _ in results):
            return True, []
        return False, [k for _, keys in results for k in keys]
    if isinstance(node, AND):
        blocking = [k for ok, keys in results if not ok for k in keys]
        return not blocking, blocking
    raise ValueError(f"unexpected expression node {node!r}")


def evaluate_expression(expression: str, allowed: frozenset[str], unknown_keys: frozenset[str]) -> Verdict:
    """Permissive per the allow-list? Blocked only by unknown/unstated keys -> `license_unknown`."""
    try:
        node = parse_expression(expression)
    except Exception as exc:  # license_expression raises several unrelated types for malformed input
        return Verdict(False, (f"unparsable: {type(exc).__name__}",), REASON_UNKNOWN)
    ok, blocking = _evaluate(node, allowed)
    if ok:
        return Verdict(True)
    blocking = list(dict.fromkeys(blocking))
    reason = REASON_UNKNOWN if all(k in unknown_keys for k in blocking) else REASON_NOT_PERMISSIVE
    return Verdict(False, tuple(blocking), reason)
