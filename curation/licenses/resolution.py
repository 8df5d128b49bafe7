"""Which licenses govern a file: the nearest license files up its tree and package metadata, and its own header.

This is the StarCoder2 / The Stack v2 directory propagation, made fail-closed:

- A directory's license files (LICENSE*, COPYING*, notices that name a license) govern it and everything below
  it, until a deeper directory has its own. All license files of that nearest directory count together (AND):
  `LICENSE` (MIT) with `COPYING` (GPL) is not permissive. A README's license section counts like a license file
  only in a directory without license files (READMEs also talk about the licenses of docs, data and examples).
- Package metadata (pyproject.toml, package.json, ...) counts when no license file governs the file, and also
  beside or below the governing license files, together with them (AND): a sub-package's `package.json` saying
  GPL is not overridden by the repository's MIT LICENSE. Beside the files, metadata naming the same licenses
  says how they combine (dual licensing: OR).
- A license file that could not be read (binary, too large), timed out or failed in ScanCode, or a LICENSE-named
  file in which ScanCode recognises no license, blocks the files it would govern: they are dropped with that
  reason instead of falling back to a license further up.
- A header narrows, never widens, what the directories pass down (AND): an MIT header in a GPL repository is
  `mit AND gpl-3.0`. Only an SPDX-License-Identifier declaration stands alone. A header that only refers
  elsewhere ("see LICENSE") defers to the directory. The rules, each with an example and a test: POLICY.md.
- A REUSE `LICENSES/` folder governs its parent directory (the repository), not only itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from curation.licenses.allowlist import AllowList
from curation.licenses.candidates import CandidateKind
from curation.licenses.detector import Detection
from curation.licenses.policy import (
    REASON_ERROR,
    REASON_FILE_BINARY,
    REASON_FILE_TOO_LARGE,
    REASON_NO_LICENSE,
    REASON_TIMEOUT,
    REASON_UNKNOWN,
    combine_and,
    evaluate_expression,
    expression_keys,
    strip_non_grants,
)

FAILURE_REASONS = {
    "timeout": REASON_TIMEOUT,
    "error": REASON_ERROR,
    "too_large": REASON_FILE_TOO_LARGE,
    "binary": REASON_FILE_BINARY,
}


@dataclass(frozen=True)
class Evidence:
    """What one license-bearing file of a repository says.

    status: `license` (expression set), `none` (nothing found), `reference` (only "see elsewhere"), or a failure:
    `timeout`, `error`, `too_large`, `binary`.
    """

    path: str
    kind: CandidateKind
    status: str
    expression: str | None = None
    detail: str | None = None

    @property
    def blocking_reason(self) -> str | None:
        """Why files governed by this evidence must be dropped, or None when it is usable."""
        if self.status in FAILURE_REASONS:
            return FAILURE_REASONS[self.status]
        if self.kind == CandidateKind.LICENSE and self.status == "none":
            return REASON_UNKNOWN  # a LICENSE file naming no license ScanCode knows: custom or modified terms
        return None


def evidence_from_detection(
    path: str, kind: CandidateKind, detection: Detection, ignorable: frozenset[str]
) -> Evidence:
    """Evidence of a license-bearing file from its ScanCode detection (references and neutral keys removed)."""
    if detection.failed:
        return Evidence(path, kind, detection.status, None, detection.detail)
    expression, had_reference = strip_non_grants(detection.expression, ignorable)
    if expression:
        return Evidence(path, kind, "license", expression, detection.expression)
    return Evidence(path, kind, "reference" if had_reference else "none", None, detection.expression)


@dataclass(frozen=True)
class Resolution:
    """The license a file is under, where it came from, or why it cannot be known (`failure`, a drop reason)."""

    expression: str | None
    source: str  # header | license_file | package_metadata | none
    source_paths: tuple[str, ...] = ()
    failure: str | None = None
    detail: str | None = None


NO_LICENSE = Resolution(None, "none")


def directory_of(path: str) -> str:
    parent = PurePosixPath(path).parent.as_posix()
    return "" if parent == "." else parent


def governed_directory(path: str) -> str:
    """The directory a license-bearing file speaks for: its own, or for a REUSE `LICENSES/x.txt` the parent."""
    directory = directory_of(path)
    if PurePosixPath(directory).name.lower() in ("licenses", "licences"):
        return directory_of(directory)
    return directory


def _ancestors(directory: str) -> list[str]:
    """`a/b` -> [`a/b`, `a`, ``]: nearest first, the repository root last."""
    out = [directory]
    while directory:
        directory = directory_of(directory)
        out.append(directory)
    return out


@dataclass
class RepositoryEvidence:
    """All license evidence of one repository, by directory, and the license each directory passes down."""

    evidence: list[Evidence]
    _by_dir: dict[str, list[Evidence]] = field(init=False, repr=False)
    _memo: dict[str, Resolution] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._by_dir = defaultdict(list)
        for item in self.evidence:
            self._by_dir[governed_directory(item.path)].append(item)

    def inherited(self, path: str) -> Resolution:
        """The license a file at `path` gets from its directories (header not considered)."""
        directory = directory_of(path)
        if directory not in self._memo:
            self._memo[directory] = self._resolve_directory(directory)
        return self._memo[directory]

    def _resolve_directory(self, directory: str) -> Resolution:
        pending_metadata: list[Evidence] = []
        for level in _ancestors(directory):
            items = self._by_dir.get(level, [])
            license_items = [e for e in items if e.kind == CandidateKind.LICENSE or (
                e.kind == CandidateKind.NOTICE and e.status not in ("none", "reference"))]  # fmt: skip
            readme_items = [
                e for e in items if e.kind == CandidateKind.README and e.status not in ("none", "reference")
            ]
            same_level_metadata = [e for e in items if e.kind == CandidateKind.METADATA and e.status != "none"]
            if license_items or readme_items:  # a README's license section counts only where no license file is
                return _decide_level(license_items or readme_items, pending_metadata, same_level_metadata)
            pending_metadata += same_level_metadata
        if pending_metadata:
            return _combine(pending_metadata, "package_metadata")
        return NO_LICENSE


def _decide_level(
    license_items: list[Evidence], pending_metadata: list[Evidence], same_level_metadata: list[Evidence]
) -> Resolution:
    """The nearest directory with license files decides, together with the package metadata at or below it.

    License files and metadata count together (AND): a package that declares more licenses than its files name
    (scancode-toolkit: Apache-2.0 files, but `... AND other-copyleft` declared for what it bundles) is not shown
    permissive by its files alone. One exception: metadata beside the files that declares an expression over the
    same licenses says how they combine (LICENSE.MIT + LICENSE.GPLv3 with a declared `GPL-3.0-or-later OR MIT`
    is that OR). Metadata beside license files that cannot be parsed is ignored: the files are the evidence.
    """
    usable = [e for e in license_items if e.status == "license"]
    references = [e for e in license_items if e.status == "reference"]
    if references and not usable:  # "see COPYING" with no COPYING that names a license
        return Resolution(None, "license_file", tuple(e.path for e in references), REASON_UNKNOWN, "reference only")
    resolution = _combine([*license_items, *pending_metadata], "license_file")
    declared = [e for e in same_level_metadata if e.status == "license" and e.expression]
    if resolution.failure or not resolution.expression or not declared:
        return resolution
    keys = _license_families(resolution.expression)
    for meta in declared:
        if not pending_metadata and _license_families(meta.expression) == keys:
            return Resolution(meta.expression, "license_file", (*resolution.source_paths, meta.path))
    expression = combine_and([resolution.expression, *(e.expression for e in declared)])
    return Resolution(expression, "license_file", (*resolution.source_paths, *(e.path for e in declared)))


def _license_families(expression: str) -> set[str]:
    """Keys with `-plus` folded in: a GPLv3 text cannot say whether "or later" applies; the metadata can."""
    return {key.removesuffix("-plus") for key in expression_keys(expression)}


def _combine(items: list[Evidence], source: str) -> Resolution:
    for item in items:
        if reason := item.blocking_reason:
            return Resolution(None, source, (item.path,), reason, item.detail)
    licensed = [e for e in items if e.status == "license"]
    if not licensed:
        return NO_LICENSE
    return Resolution(combine_and(e.expression for e in licensed), source, tuple(e.path for e in licensed))


def resolve_file(path: str, header: Detection | None, inherited: Resolution, ignorable: frozenset[str]) -> Resolution:
    """The license of one file from its header detection and what its repository passes down (POLICY.md).

    Every license that governs a file counts: a header narrows the repository's grant (AND), never widens it.
    - An SPDX-License-Identifier (REUSE) declaration is the repository's own statement of the file's license and
      stands alone (a bundled component declared by the repository).
    - A header naming exactly the licenses the repository declares (two or more) takes the repository's
      combination: `MPL-2.0 and Apache-2.0` in the header of a package declaring `MPL-2.0 OR Apache-2.0`.
    - Without a repository license, a notice is the file's only grant; a loose reference ("covered by the MIT
      license", "see the LICENSE") grants nothing.
    - A repository license that cannot be known (a failed or unreadable license file) drops the file.
    """
    if header is None:
        return inherited
    if header.failed:
        return Resolution(None, "header", (path,), FAILURE_REASONS[header.status], header.detail)
    expression, had_reference = strip_non_grants(header.expression, ignorable)
    if not expression:
        return inherited
    if header.grant == "declaration" and not had_reference:
        return Resolution(expression, "header", (path,))
    if inherited.failure:
        return inherited
    if not inherited.expression:
        if header.grant == "reference":
            return Resolution(
                expression, "header", (path,), REASON_NO_LICENSE, "a reference to a license is not a grant"
            )
        return Resolution(expression, "header", (path,))
    families = _license_families(expression)
    if len(families) > 1 and families == _license_families(inherited.expression):
        return Resolution(inherited.expression, inherited.source, (path, *inherited.source_paths))
    return Resolution(combine_and([expression, inherited.expression]), "header", (path, *inherited.source_paths))


@dataclass(frozen=True)
class FileDecision:
    """Keep or drop, the reason, and the numbers for the decisions table."""

    keep: bool
    reason: str | None
    resolution: Resolution
    blocking_keys: tuple[str, ...] = ()


def decide(resolution: Resolution, allowlist: AllowList) -> FileDecision:
    """Fail closed: keep only a resolved expression that the allow-list makes permissive."""
    if resolution.failure:
        return FileDecision(False, resolution.failure, resolution)
    if not resolution.expression:
        return FileDecision(False, REASON_NO_LICENSE, resolution)
    verdict = evaluate_expression(resolution.expression, allowlist.allowed, allowlist.unstated)
    return FileDecision(verdict.permissive, verdict.reason, resolution, verdict.blocking_keys)


def evidence_summary(evidence: Iterable[Evidence]) -> list[dict]:
    """Evidence as plain dicts (for manifests and the site-packages report)."""
    return [
        {"path": e.path, "kind": str(e.kind), "status": e.status, "expression": e.expression, "detail": e.detail}
        for e in evidence
    ]
