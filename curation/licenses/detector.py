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
what depended on them. Deadlines count the process's CPU time (a SIGPROF timer in the main thread), not wall
time, so a busy machine gives the same decisions as an idle one; a call past its budget is retried once with the
full matcher and `RETRY_BUDGET_FACTOR` times the budget, and only then becomes a `timeout`.

The license index (about 1.4 GB, 4-17 s to load from ScanCode's cache) is loaded once per process, before any
deadline starts, read-only: a missing or corrupt cache is an error with a message, never a rebuild into the
environment (ScanCode's own loader rebuilds and overwrites the shared copy when a load is interrupted). It is
held by ScanCode's module-level cache, so pipeline steps stay small enough to be copied and pickled by executors.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from curation.licenses.candidates import MetadataError, declared_licenses
from curation.licenses.policy import combine_and, expression_keys
from nano2.errors import Nano2Error

DetectionStatus = Literal["license", "none", "timeout", "error"]
# What the license statements found in a text are: an SPDX/REUSE declaration (`SPDX-License-Identifier`), a
# notice or license text, or only loose references ("covered by the MIT license", "see LICENSE"), which narrow
# but never grant (see POLICY.md).
GrantKind = Literal["declaration", "notice", "reference"]
RETRY_BUDGET_FACTOR = 4.0  # a timed-out call is retried once with the full matcher and this many times the budget
# ScanCode's own flags (licensedcode.detection.DetectionRule) for detections it is not sure of.
IMPERFECT_FLAGS = frozenset(
    {"unknown-match", "extra-words", "low-quality-matches", "imperfect-match-coverage",
     "unknown-intro-followed-by-match", "license-clues", "possible-false-positive"}
)  # fmt: skip
# The key a text gets when it holds license language that no known license matches: not permissive, fail closed.
UNKNOWN_KEY = "unknown"


@dataclass(frozen=True)
class Detection:
    """What ScanCode found in one text: `license` with an expression, `none`, or a failure (`timeout`, `error`).

    `grant` says what kind of statement the expression came from (headers only; see `GrantKind`).
    """

    status: DetectionStatus
    expression: str | None = None
    matcher: str = ""
    detail: str | None = None
    grant: GrantKind = "notice"

    @property
    def failed(self) -> bool:
        return self.status in ("timeout", "error")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Detection:
        return cls(**data)


class DetectionTimeout(Exception):
    """Raised by the CPU-time timer inside a ScanCode call that ran past its budget."""


@contextlib.contextmanager
def cpu_time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after `seconds` of this process's CPU time (SIGPROF; main thread only).

    CPU time, not wall time: the same text costs the same CPU seconds on an idle machine and on one where every
    core is busy, so the same inputs time out (or not) the same way.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGPROF"):
        yield
        return

    def _raise(signum, frame):
        raise DetectionTimeout(f"no result after {seconds:.2f} CPU seconds")

    previous = signal.signal(signal.SIGPROF, _raise)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def scancode_index_path() -> str:
    """Where ScanCode keeps its pickled license index."""
    import licensedcode.cache as scancode_cache

    return os.path.join(scancode_cache.licensedcode_cache_dir, scancode_cache.LICENSE_INDEX_DIR,
                        scancode_cache.LICENSE_INDEX_FILENAME)  # fmt: skip


def load_index():
    """The ScanCode license index of this process, loaded read-only from ScanCode's cache on first use.

    Never builds or rewrites the cache: ScanCode's own `get_index` rebuilds the 413 MB index and overwrites the
    copy inside the (shared) environment whenever a load fails, including a load interrupted by a deadline.
    Here a missing or unreadable cache is an error that says what to do.
    """
    import licensedcode.cache as scancode_cache

    if scancode_cache._LICENSE_CACHE:
        return scancode_cache._LICENSE_CACHE.index
    path = scancode_index_path()
    if not os.path.exists(path) or not os.path.getsize(path):
        raise Nano2Error(f"{path}: ScanCode's license index is missing; build it once with "
                         "`scancode-reindex-licenses` (the pipeline never builds it)")  # fmt: skip
    try:
        cache = scancode_cache.load_cache_file(path)
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise Nano2Error(
            f"{path}: ScanCode's license index cannot be loaded ({type(cause).__name__}: {cause}); it is not "
            "rebuilt here: rebuild it with `scancode-reindex-licenses` or reinstall scancode-toolkit"
        ) from None
    scancode_cache._LICENSE_CACHE = cache
    return cache.index


def scancode_version() -> str:
    import scancode_config

    return str(scancode_config.__version__)


# Phrases that only license text uses; one of them after the head sends the whole file to the matcher.
TAIL_MARKERS = (
    "spdx-license-identifier", "general public licen", "licensed under", "licenced under", "under the terms of",
    "permission is hereby granted", "redistribution and use", "creative commons", "public domain",
    "mozilla public licen", "eclipse public licen", "module_license(", "all rights reserved",
)  # fmt: skip
_LICENSE_NAMES = (r"(?:a?gpl|lgpl|mpl|epl|cddl|eupl|cecill|osl|sspl|bsl|cc[- ]?by|cc0|creative commons|proprietary"
                  r"|commercial|apache|mit|bsd|isc|zlib|unlicense|wtfpl|artistic|ruby|python|boost|json)")  # fmt: skip
# A license name within a line's reach of "license"/"copyright": `@license GPL`, `Copyright ... BSD`.
NAME_NEAR_LICENSE = re.compile(
    rf"(?:licen[cs]|copyright)[^\n]{{0,60}}?\b{_LICENSE_NAMES}\b|\b{_LICENSE_NAMES}\b[^\n]{{0,60}}?licen[cs]",
    re.IGNORECASE,
)
# License language outside what the fast path matched: sends the text to the full matcher.
LEFTOVER_LICENSE_TEXT = re.compile(
    r"licen[cs]ed under|under the terms|terms and conditions|permission is hereby|\bpublic[ -]domain\b|"
    r"redistributions? (?:and use|of source|in binary|in any form)|redistribute (?:it|and|this)|"
    r"(?:use|redistribution) (?:or \w+ )?of this (?:code|software)|must be accompanied|"
    r"permission to (?:use|copy|modify|distribute|redistribute|reproduce)\b|"
    r"(?:copying|distribution)(?: and distribution)?,? (?:and use )?of this (?:file|software|code|program)|"
    r"\b(?:is|are) permitted (?:provided|in any medium)|\bused, copied\b|"
    r"under (?:these|its|this license'?s?) terms|\byou may (?:not )?(?:modify|copy|distribute|use)\b|"
    r"(?:released|distributed|available|provided) under|creative commons|"
    r"be used (?:only )?for (?:good|non-?commercial|commercial|academic|research|military)|"
    r"copyleft|\bwithout (?:the )?(?:express )?(?:written )?permission|"
    r"(?:proprietary|confidential),? (?:and|&) (?:proprietary|confidential)|"
    r"may not (?:be )?(?:use|cop|modif|distribut)|(?:this|the) (?:software|file|code|program) is (?:free|licen)|"
    rf"\b{_LICENSE_NAMES}\b[^\n]{{0,30}}licen[cs]e|licen[cs]e[^\n]{{0,20}}\b{_LICENSE_NAMES}\b",
    re.IGNORECASE,
)
# Words of restrictive terms ("... is prohibited", "proprietary and confidential") that ordinary prose and code
# also use ("may be prohibited in some environments", "a proprietary extension"): license language only with
# words of rights or of what a license governs on the same line or the line before.
RESTRICTIVE_WORDS = re.compile(r"\b(?:disallowed|prohibited|proprietary|confidential)\b", re.IGNORECASE)
RIGHTS_CONTEXT = re.compile(
    r"licen[cs]|copyright|rights?\b|permi(?:t|ssion)|\b(?:re)?distribut|reproduc|disclos|\bcop(?:y|ie[sd]|ying)\b|"
    r"\b(?:use|usage|used|using)\b|\bsell|\bsale|sublicens|modif|property|owned|trade secret|agreement|"
    r"\bterms\b|commercial|unauthori[sz]ed|written consent|strictly",
    re.IGNORECASE,
)


# Names of licenses that can restrict (copyleft, Creative Commons with its ND/NC/SA variants, source-available) and
# the part of a ScanCode key that shows the matcher found them: named on license-language lines the full matcher
# left unmatched ("Docs released under Creative commons" beside an Apache notice), they are an unknown license.
RESTRICTIVE_NAMES = {
    "gpl": "gpl", "agpl": "gpl", "lgpl": "gpl", "mpl": "mpl", "epl": "epl", "cddl": "cddl", "eupl": "eupl",
    "cecill": "cecill", "osl": "osl", "sspl": "sspl", "bsl": "bsl", "creative commons": "cc", "ccby": "cc",
    "cc by": "cc", "cc0": "cc0",
}  # fmt: skip
# the names above as written in text: a space may be any run of spaces or hyphens ("CC-BY", "Creative  Commons")
_RESTRICTIVE_NAME = re.compile(
    r"\b(?:"
    + "|".join(name.replace(" ", r"[-\s]+") for name in sorted(RESTRICTIVE_NAMES, key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)


def unmatched_restrictive_names(text: str, covered_lines: frozenset[int], expression: str | None) -> list[str]:
    """Names of restrictive licenses (`RESTRICTIVE_NAMES`) on license-language lines no match covers that no key
    of `expression` shows (a GPL named beside a public-domain dedication the matcher read alone)."""
    keys = expression_keys(expression) if expression else []
    lines = text.split("\n")
    names: list[str] = []
    for n in sorted(_license_language_lines(text) - covered_lines):
        for match in _RESTRICTIVE_NAME.finditer(lines[n - 1]):
            name = " ".join(match.group(0).lower().replace("-", " ").split())
            shown_by = RESTRICTIVE_NAMES[name]
            if name not in names and not any(shown_by in key for key in keys):
                names.append(name)
    return names


def _license_language(line: str, previous: str) -> bool:
    """Is there license language on `line` (`previous` is the line before it, for restrictive words)?"""
    if LEFTOVER_LICENSE_TEXT.search(line):
        return True
    return RESTRICTIVE_WORDS.search(line) is not None and (
        RIGHTS_CONTEXT.search(RESTRICTIVE_WORDS.sub(" ", line)) is not None
        or RIGHTS_CONTEXT.search(previous) is not None
    )


def _license_language_lines(text: str) -> set[int]:
    """1-based numbers of the lines of `text` with license language."""
    lines = text.split("\n")
    return {n for n, line in enumerate(lines, 1) if _license_language(line, lines[n - 2] if n > 1 else "")}


def license_markers_after_head(text: str, max_lines: int) -> bool:
    """Does license language appear after the first `max_lines` lines (a license block at the end of a file,
    `MODULE_LICENSE("GPL")` at line 421, `@license` tags further down)?"""
    parts = text.split("\n", max_lines)
    if len(parts) <= max_lines:
        return False
    tail = parts[max_lines]
    lowered = tail.lower()
    return any(marker in lowered for marker in TAIL_MARKERS) or NAME_NEAR_LICENSE.search(tail) is not None


# The old name, kept for callers: the check now also looks for license names near "license"/"copyright".
license_text_after_head = license_markers_after_head


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
    """How detection runs; part of the cache key, since other settings can give other answers.

    Deadlines are CPU seconds of the detecting process.
    """

    header_lines: int = 60
    header_chars: int = 16000
    header_deadline_s: float = 5.0
    escalate_imperfect_headers: bool = True
    check_tail: bool = True
    file_deadline_s: float = 30.0
    unknown_licenses: bool = True
    max_license_text_chars: int = 300_000
    check_leftover: bool = True
    full_text_chars: int = 32_000  # the fast path's full matcher reads a file up to this long whole

    def fingerprint(self, kind: str) -> str:
        """What a cached detection of this `kind` depends on."""
        if kind == "header":
            return (
                f"scancode={scancode_version()};header5;lines={self.header_lines};chars={self.header_chars};"
                f"escalate={self.escalate_imperfect_headers};tail={self.check_tail};leftover={self.check_leftover};"
                f"whole={self.full_text_chars}"
            )
        return (
            f"scancode={scancode_version()};full3;unknown={self.unknown_licenses};leftover={self.check_leftover};"
            f"max={self.max_license_text_chars}"
        )


@dataclass(frozen=True)
class ScanResult:
    """ScanCode's answer on one text, with what the fast path needs to judge it."""

    expressions: list[str]
    imperfect: bool = False
    covered_lines: frozenset[int] = frozenset()  # 1-based lines of the text that a match covers
    grant: GrantKind = "notice"
    truncated_names: bool = False  # a matched name that is the prefix of a longer one: `CC-BY` in `CC-BY-ND`
    notice_key: str = ""  # the normalised text of the matched lines, for the notice cache
    # each detection with an expression: (expression, the lines its matches cover, no imperfection flag)
    parts: tuple[tuple[str, frozenset[int], bool], ...] = ()
    # bare references to a license ("or the GNU GPL version 2") beside a notice or license text: exact matching
    # reads each as a license of the file, where a longer rule may read the whole sentence as one expression
    mixed_references: bool = False


_NORMALISE = re.compile(r"[^a-z0-9]+")


def _normalised(text: str) -> str:
    return _NORMALISE.sub(" ", text.lower()).strip()


def leftover_license_text(text: str, covered_lines: frozenset[int]) -> bool:
    """License language on lines no match covers (unknown terms beside a permissive match)."""
    return bool(_license_language_lines(text) - covered_lines)


WINDOW_LINES = 12


def license_windows(text: str, covered_lines: frozenset[int], context: int = WINDOW_LINES) -> str:
    """The lines of `text` within `context` lines of a match or of license language, in order (gaps dropped):
    what the full matcher needs of a long file, at a fraction of the cost."""
    lines = text.split("\n")
    wanted = set()
    hits = _license_language_lines(text) | set(covered_lines)
    for n in hits:
        wanted.update(range(max(1, n - context), min(len(lines), n + context) + 1))
    return "\n".join(lines[n - 1] for n in sorted(wanted))


def _mostly_license_text(text: str, covered_lines: frozenset[int]) -> bool:
    """Are most lines of `text` within reach of license language or of a match (a license text, not code with a
    header)? Such a text is matched whole: its head or its windows alone cut the license text into pieces."""
    lines = text.count("\n") + 1
    hits = _license_language_lines(text) | set(covered_lines)
    reach = set()
    for n in hits:
        reach.update(range(max(1, n - WINDOW_LINES), min(lines, n + WINDOW_LINES) + 1))
    return len(reach) >= MOSTLY_LICENSE_SHARE * lines


MOSTLY_LICENSE_SHARE = 0.5


# Empty lines that break a ScanCode query into separately matched runs: what `Index.match` uses for a text file
# (`text_line_threshold`), where a query string would get 4.
QUERY_RUN_EMPTY_LINES = 15


class LicenseDetector:
    """ScanCode detection with a fast path and a full matcher; every call returns a Detection, never raises."""

    def __init__(self, settings: DetectorSettings | None = None, notice_cache_size: int = 4096):
        self.settings = settings or DetectorSettings()
        # full-matcher answers for imperfect-but-exact notices, by their normalised text (see detect_header)
        self._notice_cache: OrderedDict[tuple[str, str], Detection] = OrderedDict()
        self._notice_cache_size = notice_cache_size
        self.notice_cache_hits = 0

    def detect_header(self, text: str) -> Detection:
        """Fast path: exact matching on the head of a file, widened where the head is not the whole story.

        - a match that reaches the end of the head (a license text longer than the head), or license markers
          after the head (SPDX lines, `MODULE_LICENSE`, license names near "license" or
          "copyright", license phrases) send the whole file to the exact matcher instead of its head;
        - license language left over beside a fast match (lines no match covers), a match ScanCode flags as
          imperfect, or a bare reference to a license beside a notice ("under the terms of the BSD-style license
          ... or the GNU GPL version 2 or later": exact matching reads two licenses, the full matcher one OR) sends
          the same text to the full matcher; a doubtful notice already seen (same normalised text, same exact
          answer) reuses that answer instead of being matched again;
        - after leftover license language, both answers count (AND) and license text that even the full matcher
          leaves unmatched is an `unknown` license; so is a matched name that is only the prefix of a longer one
          (`CC-BY` of `CC-BY-ND`).
        """
        s = self.settings
        whole_file = s.check_tail and license_markers_after_head(text, s.header_lines)
        target = text if whole_file else head_text(text, s.header_lines, s.header_chars)
        where = "file" if whole_file else "head"
        fast, result = self._detect(target, approximate=False, unknown=False, deadline_s=s.header_deadline_s,
                                    matcher=f"exact-{where}")  # fmt: skip
        if fast.failed or result is None:
            return fast
        if not whole_file and s.check_tail and _cut_by_the_head(text, target, result.covered_lines):
            # a license text that runs past the head: its fragments would be judged as licenses of their own
            target, where = text, "file"
            fast, result = self._detect(
                target, approximate=False, unknown=False, deadline_s=s.header_deadline_s, matcher="exact-file"
            )
            if fast.failed or result is None:
                return fast
        leftover = s.check_leftover and leftover_license_text(target, result.covered_lines)
        doubtful = result.imperfect or result.mixed_references
        if not leftover and not (doubtful and s.escalate_imperfect_headers):
            return self._fail_closed(fast, result)
        cache_key = (result.notice_key, fast.expression or "")
        if not leftover and result.notice_key:
            cached = self._notice_cache.get(cache_key)
            if cached is not None:
                self._notice_cache.move_to_end(cache_key)
                self.notice_cache_hits += 1
                return cached
        # The full matcher reads a short file whole (a license text cut by the head, or cut into pieces by
        # windows, is not matched as that license), and the license-bearing parts of a long one, not all of it.
        aligned = True  # do the line numbers of both answers agree (the head and the file start where it does)?
        if len(text) <= s.full_text_chars and _mostly_license_text(text, result.covered_lines):
            target, where = text, "file"
        elif where == "file":
            target, aligned = license_windows(target, result.covered_lines), False
        full, full_result = self._detect(
            target, approximate=True, unknown=False, deadline_s=s.header_deadline_s, matcher=f"full-{where}"
        )
        if full.failed or full_result is None:
            return full
        # both answers count (AND only narrows), and license language even the full matcher leaves unmatched
        # is an unknown license (exact fragments such as a bare "public domain" do not count as identifying it)
        still_unmatched = s.check_leftover and leftover_license_text(target, full_result.covered_lines)
        if leftover or still_unmatched:
            fast_expression = fast.expression
            if aligned:  # exact fragments of a notice the full matcher matched perfectly are read as that notice
                perfect_lines = frozenset().union(*(lines for _, lines, perfect in full_result.parts if perfect))
                fast_expression = combine_and(e for e, lines, _ in result.parts if not lines <= perfect_lines)
            expression = combine_and([fast_expression, full.expression, UNKNOWN_KEY if still_unmatched else None])
            kinds = {fast.grant, full.grant} if full.expression else {fast.grant}
            grant: GrantKind = "notice" if "notice" in kinds or still_unmatched or len(kinds) > 1 else kinds.pop()
            detail = "unidentified license text" if still_unmatched else None
            answer = Detection("license" if expression else "none", expression, full.matcher, detail, grant)
            answer = self._fail_closed(answer, result)
        else:
            answer = self._fail_closed(full, full_result)
        if not leftover and result.notice_key:
            self._notice_cache[cache_key] = answer
            if len(self._notice_cache) > self._notice_cache_size:
                self._notice_cache.popitem(last=False)
        return answer

    @staticmethod
    def _fail_closed(detection: Detection, result: ScanResult) -> Detection:
        """Add `unknown` for a matched license name cut short (`CC-BY` of `CC-BY-ND`)."""
        if not result.truncated_names:
            return detection
        expression = combine_and([detection.expression, UNKNOWN_KEY])
        return Detection("license", expression, detection.matcher, "a license name cut short", "notice")

    def detect_text(self, text: str) -> Detection:
        """Full matcher on a license file, README license section or declared-license string."""
        s = self.settings
        if len(text) > s.max_license_text_chars:  # never judge a license on a truncated text
            return Detection(
                "error", None, "full", f"{len(text)} characters, over the {s.max_license_text_chars} limit"
            )
        detection, result = self._detect(
            text, approximate=True, unknown=s.unknown_licenses, deadline_s=s.file_deadline_s, matcher="full"
        )
        if not s.check_leftover or result is None or detection.status != "license":
            return detection
        names = unmatched_restrictive_names(text, result.covered_lines, detection.expression)
        if not names:
            return detection
        expression = combine_and([detection.expression, UNKNOWN_KEY])
        return Detection("license", expression, detection.matcher, f"unmatched license named: {', '.join(names)}",
                         "notice")  # fmt: skip

    def detect_declared(self, value: str) -> Detection:
        """A package-metadata license field: an SPDX expression when it parses as one, else the full matcher."""
        expression = declared_spdx_to_expression(value)
        if expression:
            return Detection("license", expression, "spdx-expression")
        return self.detect_text(f"License: {value}")

    def _detect(
        self, text: str, *, approximate: bool, unknown: bool, deadline_s: float, matcher: str
    ) -> tuple[Detection, ScanResult | None]:
        """A detection and ScanCode's answer behind it; a timeout is retried once (full matcher, larger budget)."""
        detection, result = self._detect_once(text, approximate=approximate, unknown=unknown, deadline_s=deadline_s,
                                              matcher=matcher)  # fmt: skip
        if detection.status != "timeout":
            return detection, result
        retry_budget = deadline_s * RETRY_BUDGET_FACTOR
        retried, result = self._detect_once(text, approximate=True, unknown=unknown, deadline_s=retry_budget,
                                            matcher=f"{matcher}+retry-full")  # fmt: skip
        if retried.status == "timeout":
            detail = f"{detection.detail}; retried with the full matcher: {retried.detail}"
            return Detection("timeout", None, retried.matcher, detail), None
        return retried, result

    def _detect_once(
        self, text: str, *, approximate: bool, unknown: bool, deadline_s: float, matcher: str
    ) -> tuple[Detection, ScanResult | None]:
        if not text.strip():
            return Detection("none", None, matcher), ScanResult([])
        try:
            load_index()  # before the timer starts: a load is never cut short (and never rebuilds)
        except Nano2Error as exc:
            return Detection("error", None, matcher, str(exc)[:500]), None
        started = time.process_time()
        try:
            with cpu_time_limit(deadline_s):
                result = self._scancode_scan(text, approximate, unknown)
        except DetectionTimeout as exc:
            return Detection("timeout", None, matcher, str(exc)), None
        except Exception as exc:  # ScanCode is a large codebase: any failure is recorded, the task goes on
            return Detection("error", None, matcher, f"{type(exc).__name__}: {exc}"[:500]), None
        used = time.process_time() - started
        if used > deadline_s:
            return Detection("timeout", None, matcher, f"past the {deadline_s:.2f}s CPU budget ({used:.2f}s)"), None
        expression = combine_and(result.expressions)
        grant = result.grant if expression else "notice"
        return Detection("license" if expression else "none", expression, matcher, None, grant), result

    def _scancode_scan(self, text: str, approximate: bool, unknown: bool) -> ScanResult:
        """ScanCode's detections in `text` (clues without an expression are left out of the expressions), with
        whether any is flagged imperfect, the lines matches cover, and the kind of statement they came from."""
        from licensedcode import cache
        from licensedcode.detection import LicenseDetection, group_matches, process_detections
        from licensedcode.query import Query

        # `detect_licenses(query_string=...)`, with the query broken into runs where ScanCode's own scan of a text
        # file breaks it (`QUERY_RUN_EMPTY_LINES`), not at its default for strings (4 empty lines): each run is
        # matched against the whole index, and on a long license file (Pillow's 70 KB LICENSE) the small runs cost
        # 4x the CPU of `get_licenses` on the same file. No wall-clock deadline inside ScanCode (it would return a
        # partial answer on a busy machine): the CPU timer around this call is the budget; `inf` keeps ScanCode's
        # own checks from ever firing.
        index = cache.get_index()
        query = Query(query_string=text, idx=index, line_threshold=QUERY_RUN_EMPTY_LINES)
        matches = index.match_query(qry=query, approximate=approximate, unknown_licenses=unknown,
                                    deadline=float("inf"))  # fmt: skip
        groups = [LicenseDetection.from_matches(matches=group) for group in group_matches(matches)] if matches else []
        detections = list(process_detections(detections=groups, licensing=cache.get_licensing()))
        imperfect = any(flag in IMPERFECT_FLAGS for d in detections for flag in d.detection_log)
        lines = text.split("\n")
        covered: set[int] = set()
        kinds: set[str] = set()
        truncated = False
        parts = []
        for detection in detections:
            if detection.license_expression:
                perfect = not any(flag in IMPERFECT_FLAGS for flag in detection.detection_log)
                spans = (range(m.start_line, m.end_line + 1) for m in detection.matches)
                parts.append((detection.license_expression, frozenset(n for span in spans for n in span), perfect))
            for match in detection.matches:
                if not detection.license_expression:
                    continue  # a clue: its lines stay unmatched license text
                covered.update(range(match.start_line, match.end_line + 1))
                rule = match.rule
                if match.matcher.startswith("1-spdx"):
                    kind = "declaration"
                elif rule.is_license_reference and not (rule.is_license_notice or rule.is_license_text):
                    kind = "reference"
                else:
                    kind = "notice"
                kinds.add(kind)
                if (rule.is_license_reference or rule.is_license_tag) and match.start_line == match.end_line:
                    truncated |= _cut_short(
                        match.matched_text(whole_lines=False, highlight=False),
                        lines[match.start_line - 1] if match.start_line <= len(lines) else "",
                    )
        grant: GrantKind = "notice" if "notice" in kinds else "reference" if kinds == {"reference"} else (
            "declaration" if kinds == {"declaration"} else "notice")  # fmt: skip
        notice_key = _normalised("\n".join(lines[n - 1] for n in sorted(covered) if n <= len(lines)))
        mixed_references = "reference" in kinds and "notice" in kinds
        return ScanResult([d.license_expression for d in detections if d.license_expression], imperfect,
                          frozenset(covered), grant, truncated, notice_key, tuple(parts),
                          mixed_references)  # fmt: skip


def _cut_by_the_head(text: str, head: str, covered_lines: frozenset[int]) -> bool:
    """Does a match reach the last lines of a head that is shorter than the file?"""
    if len(head) >= len(text) or not covered_lines:
        return False
    return max(covered_lines) >= head.count("\n") - 1


# Words that may follow a matched license name with a hyphen without changing which license it is.
_NAME_CONTINUATIONS = frozenset({"license", "licensed", "licence", "licenced", "licenses", "style", "only", "or"})


def _cut_short(matched: str, line: str) -> bool:
    """Is the matched name followed, in the same word, by more of a name (`CC-BY-` + `ND`, `GPL` + `v3x`)?

    ScanCode's matched text runs on to the start of the next token (`Academic Free License (`, `MIT-LICENSE.`):
    that punctuation is not part of the name. A version number after the name (`zlib-1.1.3`) is no other name.
    """
    matched = matched.strip()
    matched = re.sub(r"[^A-Za-z0-9\-]+$", "", matched)
    if not matched:
        return False
    position = line.lower().find(matched.lower())
    if position < 0:
        return False
    after = line[position + len(matched) :]
    if matched.endswith("-"):
        following = re.match(r"([A-Za-z0-9]+)", after)
    else:
        following = re.match(r"-?([A-Za-z0-9]+)", after) if after[:1] == "-" or after[:1].isalnum() else None
    if not following or following.group(1).isdigit():
        return False  # nothing follows, or a version number: `zlib-1.1.3`, `Apache-2`
    return following.group(1).lower() not in _NAME_CONTINUATIONS


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
