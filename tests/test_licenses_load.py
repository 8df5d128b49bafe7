"""The same inputs give the same license decisions on an idle machine and with a CPU hog on every core.

Deadlines count CPU time and ScanCode gets no wall-clock deadline, so a busy machine changes how long detection
takes, never what it answers. Real inputs: ScanCode's labelled cases (the shared dev split), routed as the
pipeline routes them (full matcher for license files, fast path for the rest).
"""

from __future__ import annotations

import multiprocessing
import os

import pytest

from curation.licenses.detector import DetectorSettings, LicenseDetector, load_index
from curation.licenses.evaluate import CASES_FILE, pipeline_method, read_cases

CASES = 60


def _hog(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def _decide_all(cases) -> list[tuple[str, str | None, str]]:
    detector = LicenseDetector(DetectorSettings())  # a fresh one: no notice cache carried over
    out = []
    for case in cases:
        if pipeline_method(case.filename) == "full":
            detection = detector.detect_text(case.text)
        else:
            detection = detector.detect_header(case.text)
        out.append((detection.status, detection.expression, detection.matcher))
    return out


@pytest.mark.slow
def test_same_decisions_idle_and_under_a_cpu_hog_on_every_core(shared_data):
    load_index()
    cases = read_cases(shared_data / CASES_FILE)
    step = max(len(cases) // CASES, 1)
    sample = cases[::step][:CASES]
    idle = _decide_all(sample)
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    hogs = [context.Process(target=_hog, args=(stop,), daemon=True) for _ in range(2 * (os.cpu_count() or 1))]
    for hog in hogs:
        hog.start()
    try:
        loaded = _decide_all(sample)
    finally:
        stop.set()
        for hog in hogs:
            hog.join(10)
    assert loaded == idle
    assert sum(status == "license" for status, _, _ in idle) > CASES // 2  # the sample really detects licenses
