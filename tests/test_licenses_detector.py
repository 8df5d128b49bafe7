"""ScanCode on in-memory text: the fast path, the full matcher, declared licenses, and failures that never raise."""

from __future__ import annotations

import time

import pytest

from curation.licenses.cache import DetectionCache
from curation.licenses.detector import (
    Detection,
    DetectorSettings,
    LicenseDetector,
    ScanResult,
    _cut_short,
    leftover_license_text,
    load_index,
    metadata_detection,
    to_spdx,
)

MIT_HEADER = """# Copyright (c) 2020 Someone
#
# Permission is hereby granted, free of charge, to any person obtaining a copy
# of this software and associated documentation files (the "Software"), to deal
# in the Software without restriction, including without limitation the rights
# to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
# copies of the Software, and to permit persons to whom the Software is
# furnished to do so, subject to the following conditions:
#
# The above copyright notice and this permission notice shall be included in
# all copies or substantial portions of the Software.
#
# THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
# IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
# FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
# AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
# LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
# OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
# SOFTWARE.

import os
"""


@pytest.fixture(scope="session")
def scancode_index():
    """The ScanCode license index, loaded once per test process (ScanCode caches it module-wide)."""
    return load_index()


@pytest.fixture
def detector(scancode_index) -> LicenseDetector:
    return LicenseDetector(DetectorSettings(header_deadline_s=5, file_deadline_s=20))


@pytest.mark.parametrize(
    ("head", "expression"),
    [
        ("// SPDX-License-Identifier: MIT\nint x;\n", "mit"),
        ("# SPDX-License-Identifier: GPL-2.0-or-later\nimport os\n", "gpl-2.0-plus"),
        ("/* SPDX-License-Identifier: Apache-2.0 OR MIT */\n", "apache-2.0 OR mit"),
        (MIT_HEADER, "mit"),
        ("def add(a, b):\n    return a + b\n", None),
        ("", None),
    ],
)
def test_fast_path_reads_spdx_tags_and_headers(detector, head, expression):
    detection = detector.detect_header(head)
    assert detection.expression == expression
    assert detection.status == ("license" if expression else "none")


def test_fast_path_reads_the_head_and_the_whole_file_only_when_license_language_follows(detector):
    late_tag = "x = 1\n" * 200 + "# SPDX-License-Identifier: GPL-3.0-only\n"
    late = detector.detect_header(late_tag)
    assert late.expression == "gpl-3.0" and late.matcher == "exact-file"
    head_only = LicenseDetector(DetectorSettings(check_tail=False)).detect_header(late_tag)
    assert head_only.status == "none" and head_only.matcher == "exact-head"
    early = detector.detect_header("# SPDX-License-Identifier: MIT\n" + "y = 2\n" * 200)
    assert early.expression == "mit" and early.matcher == "exact-head"


def test_fast_path_escalates_headers_scancode_flags_as_imperfect(detector):
    damaged = MIT_HEADER.replace("restriction", "reTextiction").replace("distribute,", "diTextibute,")
    exact_only = LicenseDetector(DetectorSettings(escalate_imperfect_headers=False)).detect_header(damaged)
    escalated = detector.detect_header(damaged)
    assert exact_only.expression != "mit"  # a fragment rule, not MIT
    assert escalated.expression == "mit" and escalated.matcher == "full-file"  # a short file: read whole


def test_a_license_name_is_cut_short_only_by_more_of_a_name():
    """ScanCode's matched text runs on to the next token's start (`License (`, `MIT-LICENSE.`): not a longer name."""
    assert _cut_short("CC-BY-", "# License: CC-BY-ND") and _cut_short("CC-BY", "# License: CC-BY-ND")
    assert _cut_short("GPL", "licensed under GPLvX terms")
    assert not _cut_short("Academic Free License (", 'This Academic Free License (the "License") applies')
    assert not _cut_short('THE BEER-WARE LICENSE" (', '"THE BEER-WARE LICENSE" (Revision 42):')
    assert not _cut_short("MIT-LICENSE.", "https://raw.github.com/a/b/master/MIT-LICENSE.txt")
    assert not _cut_short("www.apache.org/licenses/LICENSE-2.0](", "[www.apache.org/licenses/LICENSE-2.0](http://x)")
    assert not _cut_short("This program is based on zlib-", " * This program is based on zlib-1.1.3, so all")


def test_leftover_license_language_is_license_language_not_prose_or_code():
    def language(text: str) -> bool:
        return leftover_license_text(text, frozenset())

    assert not language("\tpublic DomainList(ArrayList<String> domains) {")
    assert not language("access to the file system may be prohibited in some environments.")
    assert not language("whatever you wish with your proprietary log4j extensions.")
    assert not language(" * the current implementation doesn't check for every disallowed")
    assert language("Sublicensing and/or selling copies\nof the Software is prohibited.")
    assert language("// Proprietary and confidential.")
    assert language("Use of this code is prohibited without a paid subscription.")
    assert language("2013-11-12 : Igor Pavlov : Public domain */")
    assert language("# Copying and distribution of this file, with or without modification,")
    assert language("Permission to use, copy, modify and distribute this software for any purpose")


def test_a_license_text_longer_than_the_head_is_matched_whole(detector):
    """The full matcher reads a short file whole: a license text cut by the 60-line head is still that license."""
    from licensedcode.cache import get_licenses_db

    text = get_licenses_db()["apache-2.0"].text
    assert text.count("\n") > 100
    detection = detector.detect_header(text)
    assert detection.expression == "apache-2.0", detection


def test_exact_fragments_of_a_notice_the_full_matcher_reads_perfectly_are_that_notice(detector):
    """A dual-license notice: the exact matcher finds its GPL fragment, the full matcher the whole `OR`."""
    notice = (
        "/*\n * Copyright (c) 2010 Someone\n *\n"
        " * This program is free software; you can redistribute it and/or modify\n"
        " * it under the terms of the GNU General Public License version 2 as\n"
        " * published by the Free Software Foundation.\n *\n"
        " * Alternatively, this software may be distributed under the terms of BSD\n"
        " * license.\n */\n"
    )
    detection = detector.detect_header(notice + "int x;\n")
    assert detection.expression is not None and " OR " in detection.expression, detection


def test_full_matcher_on_a_license_text(detector):
    from licensedcode.cache import get_licenses_db

    text = get_licenses_db()["bsd-new"].text
    detection = detector.detect_text("Copyright (c) 2001 The Authors\n\n" + text)
    assert detection.status == "license" and detection.expression == "bsd-new" and detection.matcher == "full"
    assert to_spdx(detection.expression) == "BSD-3-Clause"


def test_declared_licenses_become_scancode_expressions(detector):
    assert detector.detect_declared("MIT").expression == "mit"
    assert detector.detect_declared("Apache-2.0 OR BSD-3-Clause").expression == "apache-2.0 OR bsd-new"
    assert detector.detect_declared("License :: OSI Approved :: MIT License").expression == "mit"
    assert detector.detect_declared("Apache 2.0").expression == "apache-2.0"
    npm = metadata_detection("package.json", '{"license": "UNLICENSED"}', detector)
    assert npm.expression == "proprietary-license"
    broken = metadata_detection("pyproject.toml", "[project\n", detector)
    assert broken.status == "error"


def test_scancode_crash_becomes_an_error_detection(detector, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("ScanCode blew up")

    monkeypatch.setattr(detector, "_scancode_scan", crash)
    for detection in (detector.detect_header("x"), detector.detect_text("x")):
        assert detection.status == "error" and "ScanCode blew up" in detection.detail


def _burn_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_deadlines_count_cpu_time_not_wall_time(monkeypatch):
    """Sleeping (what a busy machine looks like from inside a process) costs no budget; computing does."""
    patient = LicenseDetector(DetectorSettings(header_deadline_s=0.05))

    def sleepy_answer(text, approximate, unknown):
        time.sleep(0.2)
        return ScanResult(["mit"])

    monkeypatch.setattr(patient, "_scancode_scan", sleepy_answer)
    assert patient.detect_header("# MIT").expression == "mit"

    def busy_answer(text, approximate, unknown):
        _burn_cpu(0.3)
        return ScanResult(["mit"])

    monkeypatch.setattr(patient, "_scancode_scan", busy_answer)
    started = time.process_time()
    detection = patient.detect_header("# MIT")
    assert detection.status == "timeout" and detection.expression is None
    assert time.process_time() - started < 2  # interrupted: the first try at 0.05 s, the retry at 0.2 s


def test_a_missing_or_corrupt_index_is_an_error_never_a_rebuild(tmp_path, monkeypatch):
    import licensedcode.cache as scancode_cache

    from curation.licenses import detector as detector_module
    from nano2.errors import Nano2Error

    corrupt = tmp_path / "index_cache"
    corrupt.write_bytes(b"not a pickle")
    monkeypatch.setattr(scancode_cache, "_LICENSE_CACHE", None)
    monkeypatch.setattr(detector_module, "scancode_index_path", lambda: str(corrupt))
    with pytest.raises(Nano2Error, match=r"cannot be loaded.*not rebuilt"):
        detector_module.load_index()
    assert corrupt.read_bytes() == b"not a pickle"
    assert LicenseDetector().detect_header("# SPDX-License-Identifier: MIT\n").status == "error"
    monkeypatch.setattr(detector_module, "scancode_index_path", lambda: str(tmp_path / "missing"))
    with pytest.raises(Nano2Error, match="missing"):
        detector_module.load_index()


def test_a_real_scancode_deadline_on_a_long_text(detector):
    from licensedcode.cache import get_licenses_db

    db = get_licenses_db()
    long_text = "\n\n".join(db[k].text for k in ("gpl-3.0", "apache-2.0", "mpl-2.0", "lgpl-2.1", "epl-2.0")) * 2
    rushed = LicenseDetector(DetectorSettings(file_deadline_s=0.01))
    assert rushed.detect_text(long_text).status == "timeout"


def _write_many(path: str, worker: int) -> None:
    cache = DetectionCache(path, flush_every=25)
    for i in range(400):
        cache.put("ns", "header", f"{worker}-{i}", Detection("license", "mit", "exact-head"))
        cache.get("ns", "header", f"{1 - worker}-{i}")
    cache.close()
    assert cache.disabled_reason is None


def test_detection_cache_is_shared_by_concurrent_workers(tmp_path):
    import multiprocessing

    path = str(tmp_path / "shared.sqlite")
    workers = [multiprocessing.get_context("fork").Process(target=_write_many, args=(path, w)) for w in (0, 1)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0, 0]
    reader = DetectionCache(path)
    assert all(reader.get("ns", "header", f"{w}-{i}") is not None for w in (0, 1) for i in range(400))


def test_an_unusable_cache_file_degrades_to_memory(tmp_path):
    cache = DetectionCache(tmp_path)  # a directory: SQLite cannot open it
    cache.put("ns", "header", "abc", Detection("license", "mit", "exact-head"))
    cache.flush()
    assert cache.get("ns", "header", "abc") == Detection("license", "mit", "exact-head")
    assert cache.disabled_reason and "OperationalError" in cache.disabled_reason
    cache.close()


def test_detection_cache_by_blob(tmp_path):
    cache = DetectionCache(tmp_path / "cache.sqlite")
    found = Detection("license", "mit", "exact-head")
    assert cache.get("ns", "header", "abc") is None
    cache.put("ns", "header", "abc", found)
    cache.put("ns", "header", "t/o", Detection("timeout", None, "full", "slow"))
    assert cache.get("ns", "header", "abc") == found and cache.hits == 1 and cache.misses == 1
    cache.close()
    reopened = DetectionCache(tmp_path / "cache.sqlite")
    assert reopened.get("ns", "header", "abc") == found  # persisted
    assert reopened.get("ns", "header", "t/o") is None  # failures are not persisted
    assert reopened.get("other-settings", "header", "abc") is None
    assert reopened.get("ns", "header", None) is None
