"""The license stage of the code pipeline: two datatrove steps around the cheap filters.

1. `RepositoryLicenses` sees every file of a repository (repositories arrive whole and contiguous from the
   reader), runs ScanCode's full matcher on its license files, notices, README license sections and package
   metadata, and writes on each file the license its directories pass down (`metadata["inherited_license"]`).
2. Cheap filters drop binaries, unknown extensions, minified code ... without paying for license detection.
3. `FileLicenseFilter` runs the exact-matcher fast path on each remaining file's head, resolves the file's
   license (header, else directories, else package metadata), and keeps it only when the allow-list says so;
   every drop goes to the decisions table with its reason and the evidence.

Detections are cached by blob hash (in process, and in SQLite when `cache_path` is set). Steps hold only
settings; the ScanCode index, the allow-list and the cache are per-process singletons, so executors can copy
and pickle the steps freely. The license knowledge itself (detection, policy, resolution) is `curation.licenses`;
this module is where it meets the code pipeline's documents.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter
from loguru import logger

from curation.code.languages import language_of
from curation.code.reader import INPUT_ISSUE_KEY
from curation.decisions import REASON_KEY, mark_drop
from curation.licenses.allowlist import ALLOWLIST_PATH, AllowList, load_allowlist
from curation.licenses.cache import DetectionCache
from curation.licenses.candidates import CandidateKind, candidate_kind, license_pointer
from curation.licenses.candidates import readme_license_section as license_section
from curation.licenses.detector import (
    Detection,
    DetectorSettings,
    LicenseDetector,
    detector_for,
    load_index,
    metadata_detection,
    to_spdx,
)
from curation.licenses.resolution import (
    Evidence,
    RepositoryEvidence,
    Resolution,
    decide,
    directory_of,
    evidence_from_detection,
    governed_directory,
    resolve_file,
)
from nano2.contracts.documents import Meta

INHERITED_KEY = "inherited_license"
# Input issues (set by the reader) that make a license-bearing file unusable as evidence.
ISSUE_TO_STATUS = {"binary": "binary", "undecodable": "binary", "too_large": "too_large", "unreadable": "error",
                   "symlink": "error", "symlink_dangling": "error", "symlink_loop": "error",
                   "symlink_outside": "error", "symlink_directory": "error"}  # fmt: skip
SKIPPED_ISSUES = frozenset({"vendored_path", "generated_file"})  # they govern only their own (dropped) trees


@functools.lru_cache(maxsize=8)
def cache_for(path: str | None) -> DetectionCache:
    """One detection cache per process and path (`None`: in memory only)."""
    return DetectionCache(path)


def repositories(data: DocumentsPipeline) -> Iterator[tuple[str, list[Document]]]:
    """Group a document stream into runs of the same repository (`metadata["repo"]`)."""
    current: str | None = None
    batch: list[Document] = []
    for doc in data:
        repo = doc.metadata.get(Meta.REPO, "")
        if batch and repo != current:
            yield current or "", batch
            batch = []
        current = repo
        batch.append(doc)
    if batch:
        yield current or "", batch


def resolution_to_dict(resolution: Resolution) -> dict:
    return {
        "expression": resolution.expression, "source": resolution.source,
        "source_paths": list(resolution.source_paths), "failure": resolution.failure, "detail": resolution.detail,
    }  # fmt: skip


def resolution_from_dict(data: dict | None) -> Resolution:
    if not data:
        return Resolution(None, "none")
    return Resolution(
        data.get("expression"), data.get("source") or "none", tuple(data.get("source_paths") or ()),
        data.get("failure"), data.get("detail"),
    )  # fmt: skip


class _CachedDetection:
    """Detection through the blob-hash cache, counting hits and scans for the step's stats."""

    def __init__(self, step: PipelineStep, detector: LicenseDetector, cache: DetectionCache):
        self.step, self.detector, self.cache = step, detector, cache

    def get(self, kind: str, blob: str | None, compute) -> Detection:
        namespace = self.detector.settings.fingerprint("header" if kind == "header" else "full")
        found = self.cache.get(namespace, kind, blob)
        if found is not None:
            self.step.stat_update(f"{kind}_cache_hits")
            return found
        with self.step.track_time(unit="scan"):
            detection = compute()
        self.step.stat_update(f"{kind}_scans")
        if detection.failed:
            self.step.stat_update(f"{kind}_{detection.status}")
        self.cache.put(namespace, kind, blob, detection)
        return detection

    def text(self, kind: str, doc: Document, text: str) -> Detection:
        return self.get(kind, doc.metadata.get(Meta.BLOB_HASH), lambda: self.detector.detect_text(text))

    def metadata(self, doc: Document) -> Detection:
        path = doc.metadata.get(Meta.PATH, "")
        return self.get(
            "metadata", doc.metadata.get(Meta.BLOB_HASH), lambda: metadata_detection(path, doc.text, self.detector)
        )

    def header(self, doc: Document) -> Detection:
        return self.get("header", doc.metadata.get(Meta.BLOB_HASH), lambda: self.detector.detect_header(doc.text))

    def close(self) -> None:
        """Flush the cache; a cache that stopped persisting is counted and logged, never fatal."""
        self.cache.close()
        if self.cache.disabled_reason:
            self.step.stat_update("detection_cache_disabled")
            logger.warning(f"detection cache {self.cache.path} not persisted: {self.cache.disabled_reason}")


TextDetector = Callable[[str, Document, str], Detection]  # (kind, document, text) -> detection


def license_pointers(docs: list[Document]) -> set[str]:
    """Files that package metadata names as its license (`"license": "SEE LICENSE IN EULA.txt"`)."""
    return {
        target
        for doc in docs
        if doc.text and (target := license_pointer(doc.metadata.get(Meta.PATH, ""), doc.text)) is not None
    }


def evidence_kind(path: str, pointers: set[str]) -> CandidateKind | None:
    """The license role of a file: by its name, or a license file because package metadata points at it."""
    kind = candidate_kind(path)
    if path in pointers and kind in (None, CandidateKind.README, CandidateKind.NOTICE):
        return CandidateKind.LICENSE
    return kind


def evidence_documents(docs: list[Document]) -> list[Document]:
    """The license-bearing files whose evidence can matter: those governing a directory that has (at any depth) a
    file that may be kept (readable, in a known language). A folder of license texts and nothing else (a license
    database) governs nothing, and is not worth ScanCode's time; a REUSE `LICENSES/` folder governs its parent."""
    needed: set[str] = set()
    candidates = []
    pointers = license_pointers(docs)
    for doc in docs:
        path = doc.metadata.get(Meta.PATH, "")
        if evidence_kind(path, pointers) is not None:
            candidates.append(doc)
        if not doc.metadata.get(INPUT_ISSUE_KEY) and language_of(path) is not None:
            directory = directory_of(path)
            while directory not in needed:
                needed.add(directory)
                if not directory:
                    break
                directory = directory_of(directory)
    return [doc for doc in candidates if governed_directory(doc.metadata.get(Meta.PATH, "")) in needed]


def repository_evidence(
    docs: list[Document], detect_text: TextDetector, detect_metadata: Callable[[Document], Detection],
    ignorable: frozenset[str],
) -> list[Evidence]:  # fmt: skip
    """Evidence from every license-bearing file of one repository.

    `detect_text(kind, doc, text)` reads a license file, notice or README license section (the pipeline uses
    the full matcher through the blob cache; the benchmark's baseline uses `scancode.api.get_licenses`).
    """
    evidence = []
    pointers = license_pointers(docs)
    for doc in docs:
        path = doc.metadata.get(Meta.PATH, "")
        kind = evidence_kind(path, pointers)
        if kind is None:
            continue
        issue = doc.metadata.get(INPUT_ISSUE_KEY)
        if issue in SKIPPED_ISSUES:
            continue
        if issue:
            evidence.append(Evidence(path, kind, ISSUE_TO_STATUS.get(issue, "error"), None, issue))
            continue
        if kind == CandidateKind.METADATA:
            detection = detect_metadata(doc)
        elif kind == CandidateKind.README:
            section = license_section(doc.text)
            if section is None:
                continue
            detection = detect_text("readme", doc, section)
        else:
            detection = detect_text("license_file", doc, doc.text)
        evidence.append(evidence_from_detection(path, kind, detection, ignorable))
    return evidence


class RepositoryLicenses(PipelineStep):
    """Detects each repository's license files once and marks every file with what its directories pass down."""

    name = "⚖️ repository licenses"
    type = "⚖️ - LICENSE"

    def __init__(self, settings: DetectorSettings | None = None, cache_path: str | None = None,
                 allowlist_path: str | Path = ALLOWLIST_PATH):  # fmt: skip
        super().__init__()
        self.settings = settings or DetectorSettings()
        self.cache_path = cache_path
        self.allowlist_path = str(allowlist_path)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is None:
            return
        allowlist = load_allowlist(self.allowlist_path)
        detect = _CachedDetection(self, detector_for(self.settings), cache_for(self.cache_path))
        try:
            for _repo, docs in repositories(data):
                self.stat_update("repositories")
                evidence = RepositoryEvidence(
                    repository_evidence(evidence_documents(docs), detect.text, detect.metadata, allowlist.neutral)
                )
                self.stat_update("license_evidence_files", value=len(evidence.evidence))
                for doc in docs:
                    self.stat_update("total")
                    inherited = evidence.inherited(doc.metadata.get(Meta.PATH, ""))
                    doc.metadata[INHERITED_KEY] = resolution_to_dict(inherited)
                    yield doc
        finally:
            detect.close()


class FileLicenseFilter(PipelineStep):
    """Fast-path header detection, resolution and the allow-list decision for each file; drops fail closed."""

    name = "⚖️ file licenses"
    type = "⚖️ - LICENSE"

    def __init__(self, settings: DetectorSettings | None = None, cache_path: str | None = None,
                 allowlist_path: str | Path = ALLOWLIST_PATH, exclusion_writer: DiskWriter | None = None):  # fmt: skip
        super().__init__()
        self.settings = settings or DetectorSettings()
        self.cache_path = cache_path
        self.allowlist_path = str(allowlist_path)
        self.exclusion_writer = exclusion_writer

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is None:
            return
        allowlist = load_allowlist(self.allowlist_path)
        detect = _CachedDetection(self, detector_for(self.settings), cache_for(self.cache_path))
        writer_context = self.exclusion_writer if self.exclusion_writer else contextlib.nullcontext()
        try:
            with writer_context as writer:
                for doc in data:
                    self.stat_update("total")
                    keep = self._decide(doc, detect, allowlist)
                    if keep:
                        self.stat_update("forwarded")
                        self.update_doc_stats(doc)
                        yield doc
                        continue
                    self.stat_update("dropped", f"dropped_{doc.metadata[REASON_KEY]}")
                    if writer is not None:
                        writer.write(doc, rank)
        finally:
            detect.close()

    def _decide(self, doc: Document, detect: _CachedDetection, allowlist: AllowList) -> bool:
        path = doc.metadata.get(Meta.PATH, "")
        inherited = resolution_from_dict(doc.metadata.pop(INHERITED_KEY, None))
        header = detect.header(doc)
        resolution = resolve_file(path, header, inherited, allowlist.neutral)
        decision = decide(resolution, allowlist)
        spdx = to_spdx_cached(resolution.expression)
        doc.metadata[Meta.LICENSE_EXPRESSION] = resolution.expression
        doc.metadata[Meta.LICENSE_SPDX] = spdx
        doc.metadata[Meta.LICENSE_SOURCE] = resolution.source
        doc.metadata[Meta.LICENSE_SOURCE_PATH] = ", ".join(resolution.source_paths) or None
        if decision.keep:
            self.stat_update(f"license_source_{resolution.source}")
            return True
        mark_drop(doc, decision.reason or "license_not_permissive", {
            "expression": resolution.expression, "spdx": spdx, "source": resolution.source,
            "source_paths": list(resolution.source_paths), "blocking_keys": list(decision.blocking_keys),
            "detail": resolution.detail,
        })  # fmt: skip
        return False


@functools.lru_cache(maxsize=100_000)
def to_spdx_cached(expression: str | None) -> str | None:
    return to_spdx(expression)


def preload() -> None:
    """Load the ScanCode index in this process (before forking workers, so they share its pages)."""
    load_index()
