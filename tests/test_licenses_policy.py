"""License expressions -> keep/drop: AND needs every term, OR one option, WITH both parts; pure, no ScanCode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from curation.licenses.allowlist import load_allowlist
from curation.licenses.policy import (
    REASON_NOT_PERMISSIVE,
    REASON_UNKNOWN,
    combine_and,
    evaluate_expression,
    expression_keys,
    strip_non_grants,
)

ALLOWED = frozenset({"mit", "apache-2.0", "bsd-new", "isc", "llvm-exception"})
UNKNOWN = frozenset({"unknown", "unknown-license-reference", "free-unknown"})


def verdict(expression: str):
    return evaluate_expression(expression, ALLOWED, UNKNOWN)


@pytest.mark.parametrize(
    ("expression", "keep", "blocking"),
    [
        ("mit", True, ()),
        ("mit AND apache-2.0", True, ()),
        ("mit AND gpl-2.0", False, ("gpl-2.0",)),
        ("gpl-2.0 AND mit AND lgpl-2.1", False, ("gpl-2.0", "lgpl-2.1")),
        ("mit OR gpl-2.0", True, ()),
        ("gpl-2.0 OR mit", True, ()),
        ("gpl-2.0 OR lgpl-2.1", False, ("gpl-2.0", "lgpl-2.1")),
        ("mpl-2.0 AND (apache-2.0 OR mit)", False, ("mpl-2.0",)),
        ("bsd-new AND (gpl-3.0 OR isc)", True, ()),
        ("(gpl-3.0 OR agpl-3.0) AND mit", False, ("gpl-3.0", "agpl-3.0")),
        ("apache-2.0 WITH llvm-exception", True, ()),
        ("gpl-2.0 WITH classpath-exception-2.0", False, ("gpl-2.0", "classpath-exception-2.0")),
        ("mit WITH commons-clause", False, ("commons-clause",)),  # an "exception" that restricts
    ],
)
def test_and_or_with_decisions(expression, keep, blocking):
    result = verdict(expression)
    assert result.permissive is keep
    assert result.blocking_keys == blocking
    assert (result.reason is None) is keep


def test_reason_separates_unknown_from_not_permissive():
    assert verdict("unknown").reason == REASON_UNKNOWN
    assert verdict("mit AND free-unknown").reason == REASON_UNKNOWN
    assert verdict("gpl-2.0 AND unknown").reason == REASON_NOT_PERMISSIVE
    assert verdict("(((").reason == REASON_UNKNOWN  # unparsable: never a keep


def test_strip_non_grants_removes_references_and_neutral_keys():
    neutral = frozenset({"warranty-disclaimer"})
    assert strip_non_grants("mit AND unknown-license-reference", neutral) == ("mit", True)
    assert strip_non_grants("warranty-disclaimer", neutral) == (None, False)
    assert strip_non_grants("unknown-license-reference", neutral) == (None, True)
    assert strip_non_grants("gpl-2.0 OR warranty-disclaimer", neutral) == ("gpl-2.0", False)
    assert strip_non_grants("apache-2.0 WITH llvm-exception AND warranty-disclaimer", neutral) == (
        "apache-2.0 WITH llvm-exception",
        False,
    )
    assert strip_non_grants(None, neutral) == (None, False)


def test_combine_and_flattens_and_drops_repeats():
    assert combine_and(["mit", "mit AND bsd-new", None, "", "apache-2.0 OR mit"]) == (
        "mit AND bsd-new AND (apache-2.0 OR mit)"
    )
    assert combine_and(["mit", "mit"]) == "mit"
    assert combine_and(["(apache-2.0 AND mit) AND apache-2.0", "mit"]) == "apache-2.0 AND mit"
    assert combine_and([]) is None


def test_shipped_allowlist_keeps_permissive_and_drops_copyleft():
    allowlist = load_allowlist()
    for key in ("mit", "apache-2.0", "bsd-new", "bsd-simplified", "isc", "zlib", "cc0-1.0", "unlicense", "python"):
        assert key in allowlist.allowed, key
    for key in ("gpl-2.0", "gpl-3.0-plus", "lgpl-2.1", "agpl-3.0", "mpl-2.0", "cc-by-sa-4.0", "proprietary-license"):
        assert key not in allowlist.allowed, key
    for denied in ("json", "other-permissive"):  # reviewed overrides: permissive by category, not kept
        assert denied not in allowlist.allowed
    assert "unknown-license-reference" in allowlist.unstated
    assert {"warranty-disclaimer", "other-permissive"} <= allowlist.neutral
    assert len(allowlist.allowed) > 500  # "several hundred" permissive ScanCode keys, as in the paper's list


KEYS = st.sampled_from(["mit", "apache-2.0", "isc", "gpl-2.0", "lgpl-2.1", "mpl-2.0", "unknown"])


def expressions(depth: int = 2):
    if depth == 0:
        return KEYS
    inner = expressions(depth - 1)
    return st.one_of(
        KEYS,
        st.tuples(inner, inner).map(lambda ab: f"({ab[0]}) AND ({ab[1]})"),
        st.tuples(inner, inner).map(lambda ab: f"({ab[0]}) OR ({ab[1]})"),
    )


@given(expressions(), expressions())
def test_and_is_all_and_or_is_any(a, b):
    keep_a, keep_b = verdict(a).permissive, verdict(b).permissive
    assert verdict(f"({a}) AND ({b})").permissive == (keep_a and keep_b)
    assert verdict(f"({a}) OR ({b})").permissive == (keep_a or keep_b)


@given(expressions())
def test_a_keep_never_contains_a_term_outside_the_allow_list_unless_it_is_an_option(expression):
    result = verdict(expression)
    if not result.permissive:
        assert result.blocking_keys
        assert set(result.blocking_keys) <= set(expression_keys(expression)) - ALLOWED
