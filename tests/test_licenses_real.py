"""The real checks on fixed subsets: ScanCode's labelled cases, and distributions of this very environment.

The full runs and their figures: `python -m curation.licenses.evaluate cases` and
`python -m curation.code.license_check` (see the report).
"""

from __future__ import annotations

import pytest

from curation.code.license_check import check_site_packages
from curation.licenses.allowlist import load_allowlist
from curation.licenses.detector import DetectorSettings, load_index
from curation.licenses.evaluate import CASES_FILE, evaluate_cases, read_cases


@pytest.fixture(scope="session")
def scancode_index():
    return load_index()


@pytest.fixture(scope="module")
def source_code_cases(shared_data):
    """The 80 shortest source-code cases (C, Java, Python, JavaScript ... files with license headers)."""
    cases = [c for c in read_cases(shared_data / CASES_FILE) if c.is_source_code]
    return sorted(cases, key=lambda c: (len(c.text), c.id))[:80]


@pytest.mark.realdata
def test_fast_path_on_labelled_source_files(scancode_index, source_code_cases):
    scores = evaluate_cases(source_code_cases, "fast", DetectorSettings(), load_allowlist())["all"]
    assert scores["cases"] == 80
    assert scores["same_decision"] >= 0.97, scores  # measured 0.9875 (one drop the label keeps)
    assert scores["same_families"] >= 0.93, scores  # measured 0.9625
    assert scores["wrong_keeps"] == 0, scores["wrong_keep_examples"]


@pytest.mark.realdata
def test_full_matcher_on_labelled_source_files(scancode_index, source_code_cases):
    scores = evaluate_cases(source_code_cases[:40], "full", DetectorSettings(), load_allowlist())["all"]
    assert scores["same_decision"] >= 0.97, scores  # measured 1.0
    assert scores["same_families"] >= 0.95, scores  # measured 0.975
    assert scores["failed"] == 0 and scores["wrong_keeps"] == 0


def test_installed_distributions_resolve_to_what_they_declare(scancode_index):
    """Real repositories with real licenses: a fixed handful of this environment's distributions."""
    report = check_site_packages(
        ["six", "idna", "click", "requests", "certifi", "intbitset", "packaging", "gemfileparser2"]
    )
    rows = {r["name"]: r for r in report["rows"]}
    for name, spdx_like in [("six", "mit"), ("idna", "bsd-new"), ("click", "bsd-new"), ("requests", "apache-2.0")]:
        assert rows[name]["verdict"] == "same_license" and rows[name]["resolved"] == spdx_like
        assert rows[name]["keep_resolved"] and rows[name]["keep_declared"]
    for copyleft in ("certifi", "intbitset"):  # MPL-2.0, LGPL-3.0+: both sides drop
        assert rows[copyleft]["verdict"] == "same_license" and not rows[copyleft]["keep_resolved"]
    assert rows["packaging"]["verdict"] == "same_decision" and rows["packaging"]["keep_resolved"]
    # LICENSE.GPLv3 + LICENSE.MIT alone read as AND (fail closed); PKG-INFO says they are alternatives (OR)
    assert rows["gemfileparser2"]["verdict"] == "different_decision" and not rows["gemfileparser2"]["keep_resolved"]
    assert rows["gemfileparser2"]["pipeline_verdict"] == "same_license" and rows["gemfileparser2"]["keep_pipeline"]
    assert report["as_the_pipeline_resolves"]["same_decision"] == 1.0
