"""The gold-set scorer of main-text extraction: the one snippet-matching rule for the benchmark and the tests.

A page of the gold set (`GOLD_SET`, real pages with hand-picked `with` snippets of the main text and `without`
snippets of boilerplate) counts a snippet when its whitespace-normalised text is a substring of the
whitespace-normalised extract. `benchmarks/bench_extract.py` scores every extractor this way; the tests hold ours
to floors measured with it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

_WHITESPACE = re.compile(r"\s+")


def normalise_whitespace(text: str) -> str:
    """Every run of whitespace (newlines and NBSP included) becomes one space; ends are trimmed."""
    return _WHITESPACE.sub(" ", text).strip()


@dataclass(slots=True)
class ExtractionResult:
    """Gold-snippet counts for one or many pages: a snippet counts when its whitespace-normalised text is a
    substring of the whitespace-normalised extract (case-sensitive, no other normalisation)."""

    with_found: int = 0
    with_total: int = 0
    without_kept: int = 0
    without_total: int = 0
    pages: int = 0
    seconds: list[float] = field(default_factory=list)

    @property
    def found(self) -> float:
        return self.with_found / self.with_total if self.with_total else 1.0

    @property
    def kept(self) -> float:
        return self.without_kept / self.without_total if self.without_total else 0.0

    def add(self, other: ExtractionResult) -> None:
        self.with_found += other.with_found
        self.with_total += other.with_total
        self.without_kept += other.without_kept
        self.without_total += other.without_total
        self.pages += other.pages
        self.seconds.extend(other.seconds)


def score_snippets(
    extracted: str | None, with_snippets: Iterable[str], without_snippets: Iterable[str]
) -> ExtractionResult:
    text = normalise_whitespace(extracted or "")
    wanted = [normalise_whitespace(s) for s in with_snippets]
    unwanted = [normalise_whitespace(s) for s in without_snippets]
    return ExtractionResult(
        with_found=sum(s in text for s in wanted),
        with_total=len(wanted),
        without_kept=sum(s in text for s in unwanted),
        without_total=len(unwanted),
        pages=1,
    )


GOLD_SET = "web/trafilatura_eval_dev.jsonl.gz"  # under shared/data; see SOURCES.md


@dataclass(frozen=True, slots=True)
class GoldPage:
    url: str
    html: str
    with_snippets: tuple[str, ...]
    without_snippets: tuple[str, ...]

    @property
    def held_out(self) -> bool:
        """The half the thresholds were not tuned on. The dev split is sha1(url) % 2 == 0, so its parity is
        constant; the next bit splits it: sha1(url) % 4 == 2 is held out, % 4 == 0 was looked at while tuning."""
        return int(hashlib.sha1(self.url.encode("utf-8")).hexdigest(), 16) % 4 == 2


def load_gold_pages(path: str | Path) -> list[GoldPage]:
    """The gold pages as stored (`html` is the decoded text the snippets were written against)."""
    pages = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            pages.append(GoldPage(row["url"], row["html"], tuple(row["with"]), tuple(row["without"])))
    return pages


def score_pages(extract: Callable[[str], str | None], pages: Iterable[GoldPage]) -> list[ExtractionResult]:
    """Run `extract` on every page; per page, the snippet counts and the CPU seconds of the call (process time:
    other jobs on a shared machine do not inflate it the way they inflate wall time)."""
    results = []
    for page in pages:
        started = time.process_time()
        extracted = extract(page.html)
        seconds = time.process_time() - started
        result = score_snippets(extracted, page.with_snippets, page.without_snippets)
        result.seconds.append(seconds)
        results.append(result)
    return results


def total(results: Iterable[ExtractionResult]) -> ExtractionResult:
    summed = ExtractionResult()
    for result in results:
        summed.add(result)
    return summed


def score_extractor(extract: Callable[[str], str | None], pages: Iterable[GoldPage]) -> ExtractionResult:
    """`score_pages` summed over the pages."""
    return total(score_pages(extract, pages))


def bootstrap_intervals(
    results: list[ExtractionResult], reference: list[ExtractionResult] | None = None, *, n: int = 2000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of `found` and `kept` by resampling pages (a page's snippets stay together, since
    they share its fate). With `reference` (the same pages, another extractor), also of the paired differences
    `found - reference found` and `kept - reference kept`."""
    import numpy as np

    counts = np.array([[r.with_found, r.with_total, r.without_kept, r.without_total] for r in results], dtype=float)
    paired = None
    if reference is not None:
        if len(reference) != len(results):
            raise ValueError("paired bootstrap needs the same pages on both sides")
        paired = np.array([[r.with_found, r.without_kept] for r in reference], dtype=float)
    rng = np.random.default_rng(seed)
    draws = {"found": [], "kept": [], "found_diff": [], "kept_diff": []}
    for _ in range(n):
        index = rng.integers(0, len(results), len(results))
        sample = counts[index].sum(axis=0)
        found, kept = sample[0] / max(1.0, sample[1]), sample[2] / max(1.0, sample[3])
        draws["found"].append(found)
        draws["kept"].append(kept)
        if paired is not None:
            other = paired[index].sum(axis=0)
            draws["found_diff"].append(found - other[0] / max(1.0, sample[1]))
            draws["kept_diff"].append(kept - other[1] / max(1.0, sample[3]))
    return {
        name: (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
        for name, values in draws.items()
        if values
    }
