"""ScanCode license detection on in-memory text, with a fast path, a full matcher, deadlines and no crashes.

- `detect_header`: the fast path for every source file. Only the first lines (where license headers and
  `SPDX-License-Identifier` tags live) go to ScanCode, and only its hash, SPDX-tag and exact (Aho-Corasick)
  matchers run (`approximate=False`): hundreds of files a second instead of about one. License language further
  down, or a match ScanCode flags as imperfect, widens that (see `detect_header`).
- `detect_text`: the full matcher (exact, then approximate sequence matching, optionally unknown-license
  detection) for the few license files, README license sections and package metadata fields of a repository;
  `metadata_detection` combines every license statement of a package metadata file.

Both run ScanCode's own detection post-processing (`licensedcode.detection.detect_licenses`, the function behind
`scancode.api.get_licenses`, which only takes a file path) on a query string, and never raise: a ScanCode
exception becomes an `error` detection and a run past the deadline a `timeout` detection, and the caller drops
what depended on them. The deadline is ScanCode's own (checked between matchers) backed by a SIGALRM timer in the
main thread, because some ScanCode phases do not look at the deadline.

The license index (about 1.4 GB, 4-7 s to load from ScanCode's cache) is loaded once per process, lazily, and held
by ScanCode's module-level cache, so pipeline steps stay small enough to be copied and pickled by executors.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from curation.licenses.candidates import MetadataError, declared_licenses
from curation.licenses.policy import combine_and

DetectionStatus = Literal["license", "none", "timeout", "error"]
HARD_TIMEOUT_GRACE = 2.0  # the SIGALRM backstop fires this many times the deadline after the call started
# ScanCode's own flags (licensedcode.detection.DetectionRule) for detections it is not sure of.
IMPERFECT_FLAGS = frozenset(
    {"unknown-match", "extra-words", "low-quality-matches", "imperfect-match-coverage",
     "unknown-intro-followed-by-match", "license-clues", "possible-false-positive"}
)  # fmt: skip


@dataclass(frozen=True)
class Detection:
    """What ScanCode found in one text: `license` with an expression, `none`, or a failure (`timeout`, `error`)."""

    status: DetectionStatus
    expression: str | None = None
    matcher: str = ""
    detail: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("timeout", "error")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Detection:
        return cls(**data)


class DetectionTimeout(Exception):
    """Raised by the SIGALRM backstop inside a ScanCode call that ignored its deadline."""


@contextlib.contextmanager
def hard_timeout(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` (main thread only; elsewhere ScanCode's own deadline is all we have)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _raise(signum, frame):
        raise DetectionTimeout(f"no result after {seconds:.1f}s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def load_index():
    """The ScanCode license index of this process (loaded from ScanCode's on-disk cache on first use)."""
    from licensedcode.cache import get_index

    return get_index()


def scancode_version() -> str:
    import scancode_config

    return str(scancode_config.__version__)


# Phrases that only license text uses; one of them after the head sends the whole file to the matcher.
TAIL_MARKERS = (
    "spdx-license-identifier", "general public licen", "licensed under", "licenced under", "under the terms of",
    "permission is hereby granted", "redistribution and use", "creative commons", "public domain",
    "mozilla public licen", "eclipse public licen",
)  # fmt: skip


def license_text_after_head(text: str, max_lines: int) -> bool:
    """Does license language appear after the first `max_lines` lines (a license block at the end of a file)?"""
    parts = text.split("\n", max_lines)
    if len(parts) <= max_lines:
        return False
    tail = parts[max_lines].lower()
    return any(marker in tail for marker in TAIL_MARKERS)


def head_text(text: str, max_lines: int, max_chars: int, max_line_chars: int = 1000) -> str:
    """The first `max_lines` lines, each cut at `max_line_chars`, the whole cut at `max_chars`."""
    lines = text.split("\n", max_lines)[:max_lines]
    return "\n".join(line[:max_line_chars] for line in lines)[:max_chars]


def to_spdx(expression: str | None) -> str | None:
    """The SPDX form of a ScanCode expression (`LicenseRef-scancode-*` for keys SPDX lacks); None stays None."""
    if not expression:
        return None
    from licensedcode.cache import build_spdx_license_expression, get_licensing

    try:
        return build_spdx_license_expression(expression, licensing=get_licensing())
    except Exception:  # a key unknown to this ScanCode: keep ours, flagged, rather than fail the document
        return f"LicenseRef-unmapped({expression})"


def declared_spdx_to_expression(value: str) -> str | None:
    """ScanCode expression for an SPDX expression string (`MIT OR Apache-2.0`); None when it is not one."""
    from licensedcode.cache import get_licensing, get_spdx_symbols, get_unknown_spdx_symbol
    from licensedcode.match_spdx_lid import get_expression

    try:
        parsed = get_expression(value, get_licensing(), get_spdx_symbols(), get_unknown_spdx_symbol())
    except Exception:
        return None
    if parsed is None:
        return None
    rendered = str(parsed)
    return None if "unknown-spdx" in rendered else rendered


@dataclass(frozen=True)
class DetectorSettings:
    """How detection runs; part of the cache key, since other settings can give other answers."""

    header_lines: int = 60
    header_chars: int = 16000
    header_deadline_s: float = 5.0
    escalate_imperfect_headers: bool = True
    check_tail: bool = True
    file_deadline_s: float = 30.0
    unknown_licenses: bool = True
    max_license_text_chars: int = 300_000

    def fingerprint(self, kind: str) -> str:
        """What a cached detection of this `kind` depends on."""
        if kind == "header":
            return (
                f"scancode={scancode_version()};header;lines={self.header_lines};chars={self.header_chars};"
                f"escalate={self.escalate_imperfect_headers};tail={self.check_tail}"
            )
        return f"scancode={scancode_version()};full;unknown={self.unknown_licenses};max={self.max_license_text_chars}"


class LicenseDetector:
    """ScanCode detection with a fast path and a full matcher; every call returns a Detection, never raises."""

    def __init__(self, settings: DetectorSettings | None = None):
        self.settings = settings or DetectorSettings()

    def detect_header(self, text: str) -> Detection:
        """Fast path: exact matching on the head of a file (license headers, SPDX-License-Identifier lines).

        Two cheap guards keep it honest, each firing on a few files in a thousand of real code:
        - license language after the head (a license block at the end of a file, a second license further down)
          sends the whole file to the exact matcher instead of its head;
        - when ScanCode itself flags the exact result as imperfect (a modified header: extra words, unknown
          text next to a match, low-quality fragments), the same text is matched again with the full matcher.
        """
        s = self.settings
        whole_file = s.check_tail and license_text_after_head(text, s.header_lines)
        target = text if whole_file else head_text(text, s.header_lines, s.header_chars)
        where = "file" if whole_file else "head"
        fast, imperfect = self._detect(target, approximate=False, unknown=False, deadline_s=s.header_deadline_s,
                                       matcher=f"exact-{where}")  # fmt: skip
        if not (imperfect and s.escalate_imperfect_headers):
            return fast
        full, _ = self._detect(target, approximate=True, unknown=False, deadline_s=s.header_deadline_s,
                               matcher=f"full-{where}")  # fmt: skip
        return full

    def detect_text(self, text: str) -> Detection:
        """Full matcher on a license file, README license section or declared-license string."""
        s = self.settings
        if len(text) > s.max_license_text_chars:  # never judge a license on a truncated text
            return Detection(
                "error", None, "full", f"{len(text)} characters, over the {s.max_license_text_chars} limit"
            )
        detection, _ = self._detect(
            text, approximate=True, unknown=s.unknown_licenses, deadline_s=s.file_deadline_s, matcher="full"
        )
        return detection

    def detect_declared(self, value: str) -> Detection:
        """A package-metadata license field: an SPDX expression when it parses as one, else the full matcher."""
        expression = declared_spdx_to_expression(value)
        if expression:
            return Detection("license", expression, "spdx-expression")
        return self.detect_text(f"License: {value}")

    def _detect(
        self, text: str, *, approximate: bool, unknown: bool, deadline_s: float, matcher: str
    ) -> tuple[Detection, bool]:
        """A detection, and whether ScanCode flagged what it found (or half-found) as imperfect."""
        if not text.strip():
            return Detection("none", None, matcher), False
        started = time.monotonic()
        deadline = time.time() + deadline_s
        try:
            with hard_timeout(deadline_s * HARD_TIMEOUT_GRACE):
                expressions, imperfect = self._scancode_expressions(text, approximate, unknown, deadline)
        except DetectionTimeout as exc:
            return Detection("timeout", None, matcher, str(exc)), False
        except Exception as exc:  # ScanCode is a large codebase: any failure is recorded, the task goes on
            return Detection("error", None, matcher, f"{type(exc).__name__}: {exc}"[:500]), False
        if time.time() > deadline:
            elapsed = time.monotonic() - started
            return Detection("timeout", None, matcher, f"past the {deadline_s:.1f}s deadline ({elapsed:.1f}s)"), False
        expression = combine_and(expressions)
        return Detection("license" if expression else "none", expression, matcher), imperfect

    def _scancode_expressions(
        self, text: str, approximate: bool, unknown: bool, deadline: float
    ) -> tuple[list[str], bool]:
        """License expressions of ScanCode's detections in `text` (clues without an expression are left out),
        and whether ScanCode flagged any detection or clue as imperfect."""
        from licensedcode.detection import detect_licenses

        load_index()
        detections = list(
            detect_licenses(query_string=text, approximate=approximate, unknown_licenses=unknown, deadline=deadline)
        )
        imperfect = any(flag in IMPERFECT_FLAGS for d in detections for flag in d.detection_log)
        return [d.license_expression for d in detections if d.license_expression], imperfect


@functools.lru_cache(maxsize=8)
def detector_for(settings: DetectorSettings) -> LicenseDetector:
    """One detector per settings per process."""
    return LicenseDetector(settings)


def metadata_detection(path: str, text: str, detector: LicenseDetector) -> Detection:
    """All license statements of a package metadata file as one detection (AND), or why it failed."""
    try:
        declared = declared_licenses(path, text)
    except MetadataError as exc:
        return Detection("error", None, "metadata", str(exc))
    expressions = []
    for item in declared:
        if item.expression:
            expressions.append(item.expression)
            continue
        detection = detector.detect_declared(item.value)
        if detection.failed:
            return detection
        if detection.expression:
            expressions.append(detection.expression)
    expression = combine_and(expressions)
    return Detection("license", expression, "metadata") if expression else Detection("none", None, "metadata")
