"""The real check of license detection, on data nobody here wrote: ScanCode's labelled license-detection cases.

`cases` (../shared/data/licenses/scancode_license_detection_cases_dev.jsonl.gz): how often our detection agrees
with the expected licenses, for the fast path (exact matching on the first lines, escalating imperfect headers)
and for the full matcher, separately. Agreement is measured three ways: the same set of license keys, the same
keys with `-plus` folded in, and the same keep/drop decision under the allow-list. Scores are given for all
cases, for source-code cases, and for two halves split by a stable hash of the case path (`half_a`, `half_b`):
changes are studied on half A's errors (every wrong drop is in the report, with the matcher and detail that
decided it) and half B shows whether they hold on cases they were not made on.
The second real check, package trees labelled by what they declare (installed PyPI distributions, npm packages),
is `curation.code.license_trees`; whole repositories resolved vs declared is `curation.code.license_check`.

    python -m curation.licenses.evaluate cases [--limit N] [--workers 2] [--output report.json]
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import gzip
import hashlib
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from curation.licenses.allowlist import AllowList, load_allowlist
from curation.licenses.candidates import candidate_kind
from curation.licenses.detector import Detection, DetectorSettings, LicenseDetector, load_index
from curation.licenses.policy import combine_and, evaluate_expression, expression_keys, strip_non_grants

CASES_FILE = "licenses/scancode_license_detection_cases_dev.jsonl.gz"
CODE_SUFFIXES = frozenset(
    [".c", ".h", ".cc", ".cpp", ".hpp", ".java", ".js", ".py", ".rb", ".php", ".go", ".rs", ".cs", ".pl", ".pm",
     ".sh", ".m4", ".S", ".el", ".scala"]
)  # fmt: skip
PROGRESS_EVERY = 250  # cases between progress lines: the full matcher takes about a second per case
# Detection modes of the cases check: (method, settings changes). `default` is what the pipeline runs on each
# case: the full matcher on license files, notices and READMEs (by file name), the fast path on everything else.
MODES = {
    "default": ("default", {}),
    "fast": ("fast", {}),
    "fast-exact": ("fast", {"escalate_imperfect_headers": False, "check_tail": False}),
    "full": ("full", {}),
    "full-no-unknown": ("full", {"unknown_licenses": False}),
}


# ---------------------------------------------------------------------------------------------------------------
# 1. labelled ScanCode cases


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    filename: str
    text: str
    expected: tuple[str, ...]

    @property
    def is_source_code(self) -> bool:
        return PurePosixPath(self.filename).suffix in CODE_SUFFIXES

    @property
    def half(self) -> str:
        """`A` or `B` by a stable hash of the case path: fixes are studied on half A, reported on half B too."""
        return case_half(self.id)


def case_half(case_id: str) -> str:
    return "A" if hashlib.sha256(case_id.encode("utf-8")).digest()[0] % 2 == 0 else "B"


def read_cases(path: str | Path) -> list[Case]:
    """The labelled cases (expected_failure ones left out, as ScanCode's own test suite does)."""
    cases = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if str(row.get("expected_failure")) == "True":
                continue
            expected = row["license_expressions"]
            if isinstance(expected, str):
                expected = ast.literal_eval(expected)
            cases.append(Case(row["id"], row["group"], row["filename"], row["text"], tuple(expected or ())))
    return cases


def license_families(expression: str | None) -> frozenset[str]:
    return frozenset(k.removesuffix("-plus") for k in expression_keys(expression)) if expression else frozenset()


def _keys(expression: str | None) -> frozenset[str]:
    return frozenset(expression_keys(expression)) if expression else frozenset()


def keeps_license(expression: str | None, allowlist: AllowList) -> bool:
    """Would a file under exactly this expression be kept (references and neutral keys removed first)?"""
    expression, _ = strip_non_grants(expression, allowlist.neutral)
    return bool(expression) and evaluate_expression(expression, allowlist.allowed, allowlist.unstated).permissive


@dataclass
class CaseScore:
    """Agreement counts over a set of cases."""

    cases: int = 0
    same_keys: int = 0
    same_families: int = 0
    same_decision: int = 0
    failed: int = 0  # timeout or error
    seconds: float = 0.0
    wrong_keeps: int = 0  # we keep, the label says drop: the legal risk
    wrong_drops: int = 0
    examples: list[dict] = field(default_factory=list)
    drop_examples: list[dict] = field(default_factory=list)  # every wrong drop, with what decided it
    # right drops (the label says drop, so do we) by the path that caught them: `caught_by_what`
    caught: dict[str, int] = field(default_factory=dict)

    def add(self, case: Case, detection: Detection, seconds: float, allowlist: AllowList) -> None:
        expected = combine_and(case.expected)
        ours = detection.expression
        self.cases += 1
        self.seconds += seconds
        self.failed += detection.failed
        self.same_keys += _keys(ours) == _keys(expected)
        self.same_families += license_families(ours) == license_families(expected)
        keep_ours = not detection.failed and keeps_license(ours, allowlist)
        keep_expected = keeps_license(expected, allowlist)
        self.same_decision += keep_ours == keep_expected
        self.wrong_keeps += keep_ours and not keep_expected
        self.wrong_drops += keep_expected and not keep_ours
        if not keep_ours and not keep_expected:
            what = caught_by_what(detection)
            self.caught[what] = self.caught.get(what, 0) + 1
        if keep_ours and not keep_expected and len(self.examples) < 30:
            self.examples.append({"id": case.id, "expected": expected, "ours": ours})
        if keep_expected and not keep_ours:
            self.drop_examples.append({"id": case.id, "half": case.half, "expected": expected, "ours": ours,
                                       "status": detection.status, "matcher": detection.matcher,
                                       "detail": detection.detail, "grant": detection.grant})  # fmt: skip

    def as_dict(self) -> dict:
        n = max(self.cases, 1)
        return {
            "cases": self.cases, "same_keys": round(self.same_keys / n, 4),
            "same_families": round(self.same_families / n, 4), "same_decision": round(self.same_decision / n, 4),
            "wrong_keeps": self.wrong_keeps, "wrong_drops": self.wrong_drops, "failed": self.failed,
            "files_per_second": round(self.cases / self.seconds, 1) if self.seconds else None,
            "caught_by": dict(sorted(self.caught.items(), key=lambda item: -item[1])),
            "wrong_keep_examples": self.examples, "wrong_drop_examples": self.drop_examples,
        }  # fmt: skip


def caught_by_what(detection: Detection) -> str:
    """Which path of the detector decided a drop (POLICY.md rules 8-10): `exact-head` the fast path on the head,
    `exact-file` license markers past the head (rule 8), `full-*` the full matcher after leftover license text, an
    imperfect match or a reference beside a notice (rule 9), `full` a license file read whole; then why, when the
    answer was widened (`unidentified license text`, `a license name cut short`) or failed (timeout, error)."""
    if detection.failed:
        return f"{detection.status}: {detection.matcher}"
    return f"{detection.matcher} / {detection.detail}" if detection.detail else detection.matcher


_WORKER_DETECTOR: LicenseDetector | None = None


def pipeline_method(filename: str) -> str:
    """How the pipeline reads a file of this name: `full` for license-bearing files, else `fast`."""
    return "fast" if candidate_kind(PurePosixPath(filename).name) is None else "full"


def _detect_case(args: tuple[str, str, DetectorSettings]) -> tuple[Detection, float]:
    mode, text, settings = args
    global _WORKER_DETECTOR
    if _WORKER_DETECTOR is None or _WORKER_DETECTOR.settings != settings:
        _WORKER_DETECTOR = LicenseDetector(settings)
    started = time.perf_counter()
    detection = _WORKER_DETECTOR.detect_header(text) if mode == "fast" else _WORKER_DETECTOR.detect_text(text)
    return detection, time.perf_counter() - started


def evaluate_cases(
    cases: list[Case], mode: str, settings: DetectorSettings, allowlist: AllowList, workers: int = 1
) -> dict[str, dict]:
    """Agreement of one detection mode (`fast` or `full`) with the labels: all cases, source-code cases, and
    the two halves of the cases by a stable hash of their path (`half_a`, `half_b`)."""
    load_index()  # once, before forking, so workers share it
    jobs = [(pipeline_method(c.filename) if mode == "default" else mode, c.text, settings) for c in cases]
    results: list[tuple[Detection, float]] = []
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            detections = pool.imap(_detect_case, jobs, chunksize=8)
        else:
            detections = map(_detect_case, jobs)
        for result in detections:
            results.append(result)
            if len(results) % PROGRESS_EVERY == 0 or len(results) == len(jobs):
                elapsed = time.perf_counter() - started
                print(f"{mode}: {len(results)}/{len(jobs)} cases, {elapsed:.0f} s", file=sys.stderr, flush=True)
    everything, code, halves = CaseScore(), CaseScore(), {"A": CaseScore(), "B": CaseScore()}
    for case, (detection, seconds) in zip(cases, results, strict=True):
        everything.add(case, detection, seconds, allowlist)
        halves[case.half].add(case, detection, seconds, allowlist)
        if case.is_source_code:
            code.add(case, detection, seconds, allowlist)
    return {"all": everything.as_dict(), "source_code": code.as_dict(), "half_a": halves["A"].as_dict(),
            "half_b": halves["B"].as_dict()}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------


def _shared_data() -> Path:
    return Path(os.environ.get("NANO2_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="check", required=True)
    cases_p = sub.add_parser("cases", help="labelled ScanCode cases: fast path and full matcher")
    cases_p.add_argument("--limit", type=int, default=0, help="first N cases only (0: all)")
    cases_p.add_argument("--workers", type=int, default=2)
    cases_p.add_argument("--modes", default="default,full", help=f"comma-separated, of: {', '.join(MODES)}")
    cases_p.add_argument("--output", type=Path, default=None, help="write the full report as JSON here")
    args = parser.parse_args(argv)
    report: dict = {}
    if args.check == "cases":
        cases = read_cases(_shared_data() / CASES_FILE)
        if args.limit:
            cases = cases[: args.limit]
        report["cases_file"] = str(_shared_data() / CASES_FILE)
        for mode in args.modes.split(","):
            method, changes = MODES[mode]
            started = time.perf_counter()
            report[mode] = evaluate_cases(cases, method, replace(DetectorSettings(), **changes), load_allowlist(),
                                          args.workers)  # fmt: skip
            report[mode]["wall_seconds"] = round(time.perf_counter() - started, 1)
            for part, label in (("all", "all"), ("half_b", "half B"), ("source_code", "source code")):
                summary = {k: v for k, v in report[mode][part].items() if not k.endswith("_examples")
                           and (k != "caught_by" or part == "all")}  # fmt: skip
                print(f"{mode}: {label} {summary}", flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
