"""The real check of the license stage on whole repositories: every distribution installed in this environment.

Each installed distribution is a real repository with a real license. Its license files (read back at their
project paths, see curation.code.sources) resolve, as the pipeline's license stage resolves them, to a license for
the repository root, which is compared with what its metadata declares (License-Expression, else License and the
license classifiers): same license families, and same keep/drop decision. The check of detection alone, on
ScanCode's labelled cases, is `curation.licenses.evaluate`.

    python -m curation.code.license_check [--distributions six idna ...] [--output report.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from curation.code.license_stage import repository_evidence
from curation.code.reader import InputLimits, file_document
from curation.code.sources import SitePackagesSource, distribution_files
from curation.licenses.allowlist import AllowList, load_allowlist
from curation.licenses.candidates import candidate_kind, declared_licenses
from curation.licenses.detector import DetectorSettings, LicenseDetector, metadata_detection
from curation.licenses.evaluate import keeps_license, license_families
from curation.licenses.resolution import RepositoryEvidence
from nano2.contracts.documents import Meta


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
        if keeps_license(resolved, allowlist) != keeps_license(self.declared, allowlist):
            return "different_decision"
        return "same_license" if license_families(resolved) == license_families(self.declared) else "same_decision"

    def as_dict(self, allowlist: AllowList) -> dict:
        return {
            "name": self.name, "verdict": self.verdict(allowlist),
            "pipeline_verdict": self.verdict(allowlist, use_pipeline=True), "resolved": self.resolved,
            "resolved_from": list(self.resolved_from), "resolved_failure": self.resolved_failure,
            "pipeline": self.pipeline, "declared": self.declared, "declared_from": self.declared_from,
            "keep_resolved": keeps_license(self.resolved, allowlist),
            "keep_pipeline": keeps_license(self.pipeline, allowlist),
            "keep_declared": keeps_license(self.declared, allowlist),
        }  # fmt: skip


def check_distribution(
    name: str, source: SitePackagesSource, detector: LicenseDetector, allowlist: AllowList
) -> DistributionCheck:
    """Resolve a distribution's root license from its license files only, and detect its declared license."""
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
        return metadata_detection(doc.metadata[Meta.PATH], doc.text, detector)

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distributions", nargs="*", default=None, help="default: every installed distribution")
    parser.add_argument("--output", type=Path, default=None, help="write the full report as JSON here")
    args = parser.parse_args(argv)
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
