"""The two real checks of the license stage, on data nobody here wrote.

1. `cases`: ScanCode's labelled license-detection cases (../shared/data/licenses/
   scancode_license_detection_cases_dev.jsonl.gz): how often our detection agrees with the expected licenses, for
   the fast path (exact matching on the first lines, escalating imperfect headers) and for the full matcher,
   separately. Agreement is measured three ways: the same set of license keys, the same keys with `-plus`
   folded in, and the same keep/drop decision under the allow-list.
2. `site-packages`: every distribution installed in this environment is a real repository with a real license.
   Its license files (read back at their project paths, see curation.code.sources) resolve to a license for the
   repository root, which is compared with what its metadata declares (License-Expression, else License and
   the license classifiers): same license families, and same keep/drop decision.

    python -m curation.licenses.evaluate cases [--limit N] [--workers 2] [--output report.json]
    python -m curation.licenses.evaluate site-packages [--output report.json]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from curation.licenses.allowlist import AllowList, load_allowlist
from curation.licenses.detector import Detection, DetectorSettings, LicenseDetector, load_index
from curation.licenses.policy import combine_and, evaluate_expression, expression_keys, strip_non_grants

CASES_FILE = "licenses/scancode_license_detection_cases_dev.jsonl.gz"
CODE_SUFFIXES = frozenset(
    [".c", ".h", ".cc", ".cpp", ".hpp", ".java", ".js", ".py", ".rb", ".php", ".go", ".rs", ".cs", ".pl", ".pm",
     ".sh", ".m4", ".S", ".el", ".scala"]
)  # fmt: skip
# Detection modes of the cases check: (method, settings changes). `fast` and `full` are what the pipeline runs.
MODES = {
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


def _families(expression: str | None) -> frozenset[str]:
    return frozenset(k.removesuffix("-plus") for k in expression_keys(expression)) if expression else frozenset()


def _keys(expression: str | None) -> frozenset[str]:
    return frozenset(expression_keys(expression)) if expression else frozenset()


def _keeps(expression: str | None, allowlist: AllowList) -> bool:
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

    def add(self, case: Case, detection: Detection, seconds: float, allowlist: AllowList) -> None:
        expected = combine_and(case.expected)
        ours = detection.expression
        self.cases += 1
        self.seconds += seconds
        self.failed += detection.failed
        self.same_keys += _keys(ours) == _keys(expected)
        self.same_families += _families(ours) == _families(expected)
        keep_ours, keep_expected = (not detection.failed) and _keeps(ours, allowlist), _keeps(expected, allowlist)
        self.same_decision += keep_ours == keep_expected
        self.wrong_keeps += keep_ours and not keep_expected
        self.wrong_drops += keep_expected and not keep_ours
        if keep_ours and not keep_expected and len(self.examples) < 30:
            self.examples.append({"id": case.id, "expected": expected, "ours": ours})

    def as_dict(self) -> dict:
        n = max(self.cases, 1)
        return {
            "cases": self.cases, "same_keys": round(self.same_keys / n, 4),
            "same_families": round(self.same_families / n, 4), "same_decision": round(self.same_decision / n, 4),
            "wrong_keeps": self.wrong_keeps, "wrong_drops": self.wrong_drops, "failed": self.failed,
            "files_per_second": round(self.cases / self.seconds, 1) if self.seconds else None,
            "wrong_keep_examples": self.examples,
        }  # fmt: skip


_WORKER_DETECTOR: LicenseDetector | None = None


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
    """Agreement of one detection mode (`fast` or `full`) with the labels: all cases and source-code cases."""
    load_index()  # once, before forking, so workers share it
    jobs = [(mode, c.text, settings) for c in cases]
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_detect_case, jobs, chunksize=8)
    else:
        results = [_detect_case(job) for job in jobs]
    everything, code = CaseScore(), CaseScore()
    for case, (detection, seconds) in zip(cases, results, strict=True):
        everything.add(case, detection, seconds, allowlist)
        if case.is_source_code:
            code.add(case, detection, seconds, allowlist)
    return {"all": everything.as_dict(), "source_code": code.as_dict()}


# ---------------------------------------------------------------------------------------------------------------
# 2. site-packages distributions


@dataclass(frozen=True)
class DistributionCheck:
    """One distribution: what its root resolves to, and what its metadata declares.

    `resolved` comes from the license files alone (independent of the declaration); `pipeline` is what the
    pipeline gives a root file without a header, which may also use PKG-INFO (the fallback when there are no
    license files, and the AND/OR of dual-licensed files when it names the same licenses).
    """

    name: str
    resolved: str | None
    resolved_from: tuple[str, ...]
    resolved_failure: str | None
    pipeline: str | None
    pipeline_failure: str | None
    declared: str | None
    declared_from: str

    def verdict(self, allowlist: AllowList, use_pipeline: bool = False) -> str:
        resolved, failure = (self.pipeline, self.pipeline_failure) if use_pipeline else (
            self.resolved, self.resolved_failure)  # fmt: skip
        if failure:
            return "resolution_failed"
        if not resolved:
            return "no_license_files"
        if not self.declared:
            return "nothing_declared"
        if _keeps(resolved, allowlist) != _keeps(self.declared, allowlist):
            return "different_decision"
        return "same_license" if _families(resolved) == _families(self.declared) else "same_decision"

    def as_dict(self, allowlist: AllowList) -> dict:
        return {
            "name": self.name, "verdict": self.verdict(allowlist),
            "pipeline_verdict": self.verdict(allowlist, use_pipeline=True), "resolved": self.resolved,
            "resolved_from": list(self.resolved_from), "resolved_failure": self.resolved_failure,
            "pipeline": self.pipeline, "declared": self.declared, "declared_from": self.declared_from,
            "keep_resolved": _keeps(self.resolved, allowlist), "keep_pipeline": _keeps(self.pipeline, allowlist),
            "keep_declared": _keeps(self.declared, allowlist),
        }  # fmt: skip


def check_distribution(name: str, source, detector: LicenseDetector, allowlist: AllowList) -> DistributionCheck:
    """Resolve a distribution's root license from its license files only, and detect its declared license."""
    from curation.code.reader import InputLimits, file_document
    from curation.code.sources import distribution_files
    from curation.licenses.candidates import candidate_kind, declared_licenses
    from curation.licenses.resolution import RepositoryEvidence
    from curation.licenses.steps import metadata_detection, repository_evidence

    dist = source.installed()[name]
    docs, metadata_doc = [], None
    for source_file in distribution_files(dist, source.site_dir()):
        if "/" in source_file.path or candidate_kind(source_file.path) is None:
            continue  # only the root's files decide the root's license
        doc = file_document(name, source_file, InputLimits())
        if source_file.path == "PKG-INFO":
            metadata_doc = doc
        else:
            docs.append(doc)

    def detect_metadata(doc):
        return metadata_detection(doc.metadata["path"], doc.text, detector)

    evidence = repository_evidence(docs, lambda kind, doc, text: detector.detect_text(text), detect_metadata,
                                   allowlist.neutral)  # fmt: skip
    root = RepositoryEvidence(evidence).inherited("__root_file__")
    declared, declared_from, pipeline = None, "none", root
    if metadata_doc is not None and metadata_doc.text:
        fields = declared_licenses("PKG-INFO", metadata_doc.text)
        declared_from = "+".join(sorted({f.field for f in fields})) or "none"
        declared = detect_metadata(metadata_doc).expression
        with_metadata = evidence + repository_evidence([metadata_doc], None, detect_metadata, allowlist.neutral)
        pipeline = RepositoryEvidence(with_metadata).inherited("__root_file__")
    return DistributionCheck(name, root.expression, root.source_paths, root.failure, pipeline.expression,
                             pipeline.failure, declared, declared_from)  # fmt: skip


def check_site_packages(names: Iterable[str] | None = None, settings: DetectorSettings | None = None) -> dict:
    """The site-packages real check over `names` (default: every installed distribution)."""
    from curation.code.sources import SitePackagesSource

    allowlist = load_allowlist()
    detector = LicenseDetector(settings or DetectorSettings())
    source = SitePackagesSource(kind="site-packages", distributions=list(names) if names else None)
    started = time.perf_counter()
    checks = [check_distribution(name, source, detector, allowlist) for name in source.units()]
    rows = [c.as_dict(allowlist) for c in checks]
    report: dict = {"distributions": len(rows)}
    for label, key in (("license_files_only", "verdict"), ("as_the_pipeline_resolves", "pipeline_verdict")):
        verdicts = Counter(r[key] for r in rows)
        compared = sum(verdicts[v] for v in ("same_license", "same_decision", "different_decision"))
        report[label] = {
            "verdicts": dict(verdicts), "compared": compared,
            "same_license": round(verdicts["same_license"] / compared, 4) if compared else None,
            "same_decision": round(1 - verdicts["different_decision"] / compared, 4) if compared else None,
        }  # fmt: skip
    return {**report, "seconds": round(time.perf_counter() - started, 1), "rows": rows}


# ---------------------------------------------------------------------------------------------------------------


def _shared_data() -> Path:
    return Path(os.environ.get("NANO2_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="check", required=True)
    cases_p = sub.add_parser("cases", help="labelled ScanCode cases: fast path and full matcher")
    cases_p.add_argument("--limit", type=int, default=0, help="first N cases only (0: all)")
    cases_p.add_argument("--workers", type=int, default=2)
    cases_p.add_argument("--modes", default="fast,full", help=f"comma-separated, of: {', '.join(MODES)}")
    sp = sub.add_parser("site-packages", help="installed distributions: resolved vs declared license")
    sp.add_argument("--distributions", nargs="*", default=None)
    for p in (cases_p, sp):
        p.add_argument("--output", type=Path, default=None, help="write the full report as JSON here")
    args = parser.parse_args(argv)
    if args.check == "cases":
        cases = read_cases(_shared_data() / CASES_FILE)
        if args.limit:
            cases = cases[: args.limit]
        report: dict = {"cases_file": str(_shared_data() / CASES_FILE)}
        for mode in args.modes.split(","):
            method, changes = MODES[mode]
            started = time.perf_counter()
            report[mode] = evaluate_cases(cases, method, replace(DetectorSettings(), **changes), load_allowlist(),
                                          args.workers)  # fmt: skip
            report[mode]["wall_seconds"] = round(time.perf_counter() - started, 1)
            summary = {k: v for k, v in report[mode]["all"].items() if k != "wrong_keep_examples"}
            print(f"{mode}: all {summary}", flush=True)
            code = {k: v for k, v in report[mode]["source_code"].items() if k != "wrong_keep_examples"}
            print(f"{mode}: source code {code}", flush=True)
    else:
        report = check_site_packages(args.distributions)
        print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))
        for row in report["rows"]:
            if row["verdict"] != "same_license" or row["pipeline_verdict"] != "same_license":
                print(f"{row['verdict']:19} {row['pipeline_verdict']:19} {row['name']:24} resolved={row['resolved']} "
                      f"pipeline={row['pipeline']} declared={row['declared']}")  # fmt: skip
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
