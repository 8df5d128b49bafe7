"""Main-text extraction on the 482 gold pages of trafilatura's evaluation set (shared/data, see SOURCES.md).

One script, one core, the same snippet rule for every row (`curation.web.evaluate.score_snippets`: a gold snippet
counts when its whitespace-normalised text is a substring of the whitespace-normalised extract). Columns: share of
`with` snippets found, share of `without` (boilerplate) snippets kept, CPU milliseconds per page (median and mean,
`time.process_time`, so other jobs on a shared machine do not inflate them), wall-clock mean, and the speed ratio
against trafilatura default (mean CPU time).

Rows: trafilatura as datatrove's `Trafilatura` step calls it (favour_precision, and default = favour_precision
off), jusText (Nemotron-CC's choice; one page's language is not known up front, so its stop list is the union of
the gold set's languages), resiliparse main-content, and ours: `extract_main_text` on all pages, on the held-out
half (sha1(url) % 4 == 2, never looked at while tuning) and the tuning half, the math-aware pipeline path
(`extract_page`), and the other two `favour` settings.

    .venv/bin/python benchmarks/bench_extract.py [--data ../shared/data] [--core 0] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from curation.web.evaluate import GOLD_SET, ExtractionResult, GoldPage, load_gold_pages, score_extractor
from curation.web.extract import extract_main_text
from curation.web.math_extract import extract_page

REPO = Path(__file__).resolve().parent.parent
JUSTEXT_LANGUAGES = ("German", "English", "Spanish", "French", "Polish", "Italian", "Portuguese")


def trafilatura_extractor(favour_precision: bool) -> Callable[[str], str | None]:
    from trafilatura import extract

    def run(html: str) -> str | None:
        # the arguments of datatrove's Trafilatura step
        return extract(html, favor_precision=favour_precision, include_comments=False, deduplicate=True)

    return run


def justext_extractor() -> Callable[[str], str] | None:
    try:
        import justext
    except ImportError:
        return None
    stoplist = frozenset().union(*(justext.get_stoplist(language) for language in JUSTEXT_LANGUAGES))

    def run(html: str) -> str:
        paragraphs = justext.justext(html, stoplist)
        return "\n".join(p.text for p in paragraphs if not p.is_boilerplate)

    return run


def resiliparse_extractor() -> Callable[[str], str]:
    from resiliparse.extract.html2text import extract_plain_text

    return lambda html: extract_plain_text(html, main_content=True)


def measure(extract: Callable[[str], str | None], pages: list[GoldPage]) -> tuple[ExtractionResult, float]:
    wall_started = time.perf_counter()
    result = score_extractor(extract, pages)
    return result, (time.perf_counter() - wall_started) / max(1, len(pages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("NANO2_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to (-1: no pinning)")
    parser.add_argument("--quick", action="store_true", help="first 60 pages only (a smoke run)")
    args = parser.parse_args()
    if args.core >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    pages = load_gold_pages(Path(args.data) / GOLD_SET)
    if args.quick:
        pages = pages[:60]
    held_out = [p for p in pages if p.held_out]
    tuning = [p for p in pages if not p.held_out]

    rows: list[tuple[str, list[GoldPage], Callable[[str], str | None] | None]] = [
        ("trafilatura favour_precision", pages, trafilatura_extractor(True)),
        ("trafilatura default", pages, trafilatura_extractor(False)),
        ("jusText (union stop list)", pages, justext_extractor()),
        ("resiliparse main-content", pages, resiliparse_extractor()),
        ("ours (balanced)", pages, extract_main_text),
        ("ours, held-out half", held_out, extract_main_text),
        ("ours, tuning half", tuning, extract_main_text),
        ("ours, math-aware step path", pages, lambda html: extract_page(html)[0]),
        ("ours favour=precision", pages, lambda html: extract_main_text(html, favour="precision")),
        ("ours favour=recall", pages, lambda html: extract_main_text(html, favour="recall")),
    ]
    for _, _, extract in rows:  # import and warm every extractor before any timing
        if extract is not None:
            extract(pages[0].html)

    print(
        f"{len(pages)} gold pages ({len(held_out)} held out), {sum(len(p.with_snippets) for p in pages)} `with` and "
        f"{sum(len(p.without_snippets) for p in pages)} `without` snippets; pinned to core {args.core}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'extractor':30s} {'pages':>5s} {'found':>6s} {'kept':>6s} {'ms med':>7s} {'ms mean':>7s} "
        f"{'wall ms':>7s} {'x faster':>8s}"
    )
    print(header)
    print("-" * len(header))
    measured: dict[str, tuple[ExtractionResult, float] | None] = {}
    for name, subset, extract in rows:
        measured[name] = None if extract is None else measure(extract, subset)
    reference = measured["trafilatura default"]
    reference_ms = 1000 * statistics.fmean(reference[0].seconds) if reference else None
    for name, row in measured.items():
        if row is None:
            print(f"{name:30s} not installed (pip install jusText)")
            continue
        result, wall = row
        mean_ms = 1000 * statistics.fmean(result.seconds)
        median_ms = 1000 * statistics.median(result.seconds)
        ratio = f"{reference_ms / mean_ms:8.1f}" if reference_ms else f"{'n/a':>8s}"
        print(
            f"{name:30s} {result.pages:5d} {result.found:6.3f} {result.kept:6.3f} {median_ms:7.2f} {mean_ms:7.2f} "
            f"{1000 * wall:7.2f} {ratio}"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f} (2 shared cores: wall ms may include other jobs)")


if __name__ == "__main__":
    main()
