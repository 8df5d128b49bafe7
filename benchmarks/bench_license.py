"""License stage vs ScanCode's default per-file `get_licenses`: files decided per second, and same decisions.

Both sides decide the same files the same way except for how they detect licenses, so the comparison isolates
the detector design:

- ours: ScanCode's full matcher on each repository's license files, notices, README license sections (once per
  repository, blob-cached), and the exact-matcher fast path on the first 60 lines of every file;
- baseline: `scancode.api.get_licenses(path)` (ScanCode's default: whole file, approximate matching, 120 s
  timeout as in the scancode CLI) on every file and every license file.

Both sides run in this one process (no workers), and are timed in its CPU time (`time.process_time`), so a busy
machine does not change the ratio; wall-clock timings on a shared machine varied 3x from run to run.

Files: every file of the chosen installed distributions that passes the cheap filters (readable text, a known
language, StarCoder heuristics), i.e. the files that reach the license decision in the pipeline. Ours is timed
on all of them; the baseline (about a second a file) on a seeded random sample, and its time for all of them is
extrapolated from the sample mean, plus its measured time on the license files. Decisions (keep/drop under the
same resolution rules and allow-list) are compared on the sample.

    python benchmarks/bench_license.py [--sample 300] [--seed 0] [--distributions a b ...] [--output report.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from scancode.api import get_licenses

from curation.code.heuristics import HeuristicsSettings, heuristics_verdict, score_code
from curation.code.languages import language_of
from curation.code.license_stage import evidence_documents, repository_evidence
from curation.code.reader import INPUT_ISSUE_KEY, InputLimits, file_document
from curation.code.sources import SitePackagesSource, distribution_files
from curation.licenses.allowlist import load_allowlist
from curation.licenses.cache import DetectionCache
from curation.licenses.detector import Detection, DetectorSettings, LicenseDetector, load_index, metadata_detection
from curation.licenses.resolution import RepositoryEvidence, decide, resolve_file
from nano2.contracts.documents import Meta

DEFAULT_DISTRIBUTIONS = [
    "requests", "urllib3", "idna", "certifi", "click", "rich", "jinja2", "markupsafe", "pygments", "six", "toml",
    "attrs", "packaging", "pyparsing", "pluggy", "h11", "httpx", "anyio", "typer", "tqdm", "intbitset",
    "text-unidecode", "gemfileparser2", "tld", "regex", "hypothesis", "networkx", "dateparser", "fsspec",
    "pydantic", "trafilatura", "lxml", "cryptography", "pillow", "numpy", "datatrove", "pip",
]  # fmt: skip
BASELINE_TIMEOUT_S = 120  # the scancode CLI's default --timeout


def eligible(doc, heuristics: HeuristicsSettings) -> bool:
    """Does the file reach the license decision (after input issues, language and heuristics)?"""
    if doc.metadata.get(INPUT_ISSUE_KEY):
        return False
    language = language_of(doc.metadata[Meta.PATH])
    return language is not None and heuristics_verdict(score_code(doc.text), language, heuristics) is None


def baseline_detection(location: str | None, text: str | None = None) -> Detection:
    """`get_licenses` on a file (or on `text` written to a temporary file), as a Detection."""
    temporary = None
    try:
        if location is None:
            with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as fh:
                fh.write(text or "")
            location = temporary = fh.name
        result = get_licenses(location, deadline=time.time() + BASELINE_TIMEOUT_S)
    except Exception as exc:
        return Detection("error", None, "get_licenses", f"{type(exc).__name__}: {exc}")
    finally:
        if temporary is not None:
            os.unlink(temporary)
    expression = result.get("detected_license_expression")
    return Detection("license" if expression else "none", expression, "get_licenses")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=300, help="files timed with get_licenses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distributions", nargs="*", default=DEFAULT_DISTRIBUTIONS)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    load_index()
    index_seconds = time.perf_counter() - started
    allowlist = load_allowlist()
    settings = DetectorSettings()
    detector = LicenseDetector(settings)
    heuristics = HeuristicsSettings()
    source = SitePackagesSource(kind="site-packages", distributions=args.distributions)
    units = source.units()

    # read every file once (not timed: both sides need it)
    repos: dict[str, tuple[list, list, dict]] = {}
    for unit in units:
        files = list(distribution_files(source.installed()[unit], source.site_dir()))
        locations = {f.path: f.location for f in files}
        docs = [file_document(unit, f, InputLimits()) for f in files]
        repos[unit] = (docs, [d for d in docs if eligible(d, heuristics)], locations)
    n_files = sum(len(e) for _, e, _ in repos.values())
    print(f"{len(units)} distributions, {sum(len(d) for d, _, _ in repos.values())} files, {n_files} reach the "
          f"license decision; ScanCode index loaded in {index_seconds:.1f}s", flush=True)  # fmt: skip

    # ours: the license stage on every eligible file (license files once per repository, blob cache in memory)
    cache = DetectionCache()
    ours: dict[str, object] = {}
    t_evidence = t_headers = 0.0

    def cached(kind: str, blob: str | None, compute) -> Detection:
        found = cache.get("bench", kind, blob)
        if found is None:
            found = compute()
            cache.put("bench", kind, blob, found)
        return found

    for docs, files, _ in repos.values():
        t0 = time.process_time()
        evidence = RepositoryEvidence(repository_evidence(
            evidence_documents(docs),
            lambda kind, doc, text: cached(kind, doc.metadata[Meta.BLOB_HASH], lambda: detector.detect_text(text)),
            lambda doc: cached("metadata", doc.metadata[Meta.BLOB_HASH],
                               lambda: metadata_detection(doc.metadata[Meta.PATH], doc.text, detector)),
            allowlist.neutral,
        ))  # fmt: skip
        t1 = time.process_time()
        for doc in files:
            header = cached("header", doc.metadata[Meta.BLOB_HASH], lambda d=doc: detector.detect_header(d.text))
            path = doc.metadata[Meta.PATH]
            ours[doc.id] = decide(resolve_file(path, header, evidence.inherited(path), allowlist.neutral), allowlist)
        t_evidence += t1 - t0
        t_headers += time.process_time() - t1
    t_ours = t_evidence + t_headers
    print(f"ours: {n_files / t_ours:.1f} files/s ({t_evidence:.1f}s license files, {t_headers:.1f}s file heads, "
          f"cache hits {cache.hits})", flush=True)  # fmt: skip

    # baseline: get_licenses on every license file of every repository, and on a sample of the files
    t_base_evidence = 0.0
    base_evidence: dict[str, RepositoryEvidence] = {}
    for unit, (docs, _, locations) in repos.items():
        t0 = time.process_time()
        base_evidence[unit] = RepositoryEvidence(repository_evidence(
            evidence_documents(docs), lambda kind, doc, text, loc=locations: baseline_detection(
                loc.get(doc.metadata[Meta.PATH]) if kind == "license_file" else None, text),
            lambda doc: metadata_detection(doc.metadata[Meta.PATH], doc.text, detector), allowlist.neutral,
        ))  # fmt: skip
        t_base_evidence += time.process_time() - t0
    print(f"baseline: license files {t_base_evidence:.1f}s", flush=True)
    population = [(unit, doc) for unit, (_, files, _) in repos.items() for doc in files]
    sample = random.Random(args.seed).sample(population, min(args.sample, len(population)))
    t_base_sample = 0.0
    same, disagreements = 0, []
    for i, (unit, doc) in enumerate(sample, 1):
        location = repos[unit][2][doc.metadata[Meta.PATH]]
        t0 = time.process_time()
        detection = baseline_detection(location)
        t_base_sample += time.process_time() - t0
        path = doc.metadata[Meta.PATH]
        base = decide(resolve_file(path, detection, base_evidence[unit].inherited(path), allowlist.neutral), allowlist)
        mine = ours[doc.id]
        if base.keep == mine.keep:
            same += 1
        else:
            disagreements.append({
                "file": doc.id, "ours": [mine.keep, mine.reason, mine.resolution.expression, mine.resolution.source],
                "get_licenses": [base.keep, base.reason, base.resolution.expression, base.resolution.source],
            })  # fmt: skip
        if i % 50 == 0:
            print(f"  baseline sample {i}/{len(sample)}: {i / t_base_sample:.2f} files/s", flush=True)
    per_file = t_base_sample / len(sample)
    t_base = n_files * per_file + t_base_evidence
    report = {
        "distributions": len(units), "files_deciding": n_files, "sample": len(sample),
        "index_load_seconds": round(index_seconds, 1),
        "ours": {"seconds": round(t_ours, 1), "license_files_seconds": round(t_evidence, 1),
                 "file_heads_seconds": round(t_headers, 1), "files_per_second": round(n_files / t_ours, 1)},
        "get_licenses": {"sample_seconds": round(t_base_sample, 1), "seconds_per_file": round(per_file, 3),
                         "license_files_seconds": round(t_base_evidence, 1),
                         "extrapolated_seconds": round(t_base, 1), "files_per_second": round(n_files / t_base, 2)},
        "speedup": round(t_base / t_ours, 1),
        "per_file_head_vs_get_licenses": round(per_file / (t_headers / n_files), 1),
        "same_decision": round(same / len(sample), 4), "disagreements": disagreements,
    }  # fmt: skip
    print(json.dumps({k: v for k, v in report.items() if k != "disagreements"}, indent=2))
    for row in disagreements:
        print(f"  differs: {row['file']}: ours {row['ours']} | get_licenses {row['get_licenses']}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
