"""The allow-list generator: a pure, deterministic function of ScanCode's database and the reviewed overrides."""

from __future__ import annotations

import json

import pytest

from curation.licenses import allowlist as al
from curation.licenses.allowlist import LicenseRecord, Overrides, build_allowlist, render_allowlist

RECORDS = [
    LicenseRecord("mit", "Permissive", "MIT", False),
    LicenseRecord("cc0-1.0", "Public Domain", "CC0-1.0", False),
    LicenseRecord("json", "Permissive", "JSON", False),
    LicenseRecord("gpl-2.0", "Copyleft", "GPL-2.0-only", False),
    LicenseRecord("ofl-1.1", "Copyleft Limited", "OFL-1.1", False),
    LicenseRecord("llvm-exception", "Permissive", "LLVM-exception", True),
    LicenseRecord("unknown", "Unstated License", "LicenseRef-scancode-unknown", False),
]


def test_categories_and_overrides_decide_membership():
    overrides = Overrides(deny={"json": "field of use"}, allow={"ofl-1.1": "fonts"}, neutral={"unknown": "x"})
    doc = build_allowlist(RECORDS, overrides, "1.0")
    allowed = {e["key"]: e for e in doc["allowed"]}
    assert set(allowed) == {"mit", "cc0-1.0", "llvm-exception", "ofl-1.1"}
    assert allowed["ofl-1.1"]["source"] == "override" and allowed["mit"]["source"] == "category"
    assert allowed["llvm-exception"]["exception"] is True
    assert doc["denied"] == {"json": "field of use"}
    assert doc["unstated"] == ["unknown"] and doc["neutral"] == ["unknown"]
    assert doc["counts"] == {"database": 7, "allowed": 4, "denied_by_override": 1}


def test_generation_is_deterministic_and_order_independent():
    overrides = Overrides(deny={"json": "field of use"})
    first = render_allowlist(build_allowlist(RECORDS, overrides, "1.0"))
    second = render_allowlist(build_allowlist(list(reversed(RECORDS)), overrides, "1.0"))
    assert first == second
    assert json.loads(first)["allowed"][0]["key"] == "cc0-1.0"  # sorted by key
    changed = render_allowlist(build_allowlist([*RECORDS[:3], LicenseRecord("gpl-2.0", "Permissive", "x", False)],
                                               overrides, "1.0"))  # fmt: skip
    assert json.loads(changed)["license_db_sha256"] != json.loads(first)["license_db_sha256"]


def test_override_of_a_key_scancode_does_not_know_is_an_error():
    with pytest.raises(ValueError, match="not in the ScanCode database: no-such-license"):
        build_allowlist(RECORDS, Overrides(deny={"no-such-license": "typo"}), "1.0")


def test_shipped_overrides_file_validates():
    overrides = al.load_overrides()
    assert "json" in overrides.deny and all(reason.strip() for reason in overrides.deny.values())


def test_shipped_allowlist_is_what_the_generator_makes_from_the_installed_scancode(tmp_path):
    """Reproducible: two regenerations are byte-identical, and equal to the committed data file."""
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    text = al.generate(first)
    al.generate(second)
    assert first.read_bytes() == second.read_bytes()
    committed = json.loads(al.ALLOWLIST_PATH.read_text(encoding="utf-8"))
    if committed["scancode_toolkit_version"] != al.scancode_version():
        made_with = committed["scancode_toolkit_version"]
        pytest.skip(f"data file made with ScanCode {made_with}, {al.scancode_version()} installed here")
    assert text == al.ALLOWLIST_PATH.read_text(encoding="utf-8"), "regenerate: python -m curation.licenses.allowlist"
    assert al.main(["--check"]) == 0
