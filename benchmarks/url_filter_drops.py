"""URL-filter drops on the real URLs of the gold sets, substring (datatrove) vs whole-token matching of banned
sub-words, counted side by side on the same URLs with the same lists.

URLs: the 482 pages of the trafilatura extraction gold set (real articles, blogs, shops; ~71% German) and the 38
response records of the two real WARC samples (../shared/data/web; the DCLM quality labels carry no URLs). Lists:
those of curation/configs/web-tiny.yaml (the DCLM RefinedWeb strict / soft / hard lists) plus datatrove's
integrated lists, as the pipeline runs them. Every gold-set page is a page a curator would keep, so a drop by a
banned sub-word there is a false positive unless the URL itself names adult content; the script prints each URL
that one mode drops and the other keeps, with the word that matched, to judge that by eye.

Usage: python benchmarks/url_filter_drops.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
from collections import Counter
from pathlib import Path

from datatrove.data import Document

from curation.web.steps import SUBWORD_MATCHES, OfflineURLFilter


def gold_urls(shared: Path) -> list[str]:
    from warcio.archiveiterator import ArchiveIterator

    with gzip.open(shared / "web" / "trafilatura_eval_dev.jsonl.gz", "rt", encoding="utf-8") as f:
        urls = [json.loads(line)["url"] for line in f]
    for warc in sorted((shared / "web").glob("*.warc.gz")):
        with open(warc, "rb") as fh:
            urls += [
                r.rec_headers.get_header("WARC-Target-URI") for r in ArchiveIterator(fh) if r.rec_type == "response"
            ]
    return urls


def url_filter(shared: Path, mode: str) -> OfflineURLFilter:
    lists = shared / "web" / "banlists"
    return OfflineURLFilter(
        banned_words_files=[lists / "refinedweb_banned_words_strict_reverse_engineered.txt"],
        soft_banned_words_files=[lists / "refinedweb_banned_words_soft_reverse_engineered.txt"],
        banned_subwords_files=[lists / "refinedweb_banned_words_hard_reverse_engineered.txt"],
        subword_match=mode,
    )


def matched_subwords(f: OfflineURLFilter, url: str) -> list[str]:
    from datatrove.pipeline.filters.url_filter import normalize

    squeezed = normalize(url)
    return sorted({w for w in f.banned_subwords if w and w in squeezed})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("NANO2_SHARED_DATA", "../shared/data")))
    args = parser.parse_args()
    urls = gold_urls(args.shared)
    verdicts: dict[str, dict[str, str | None]] = {}
    filters = {mode: url_filter(args.shared, mode) for mode in SUBWORD_MATCHES}
    for mode, f in filters.items():
        out = {}
        for url in urls:
            kept = f.filter(Document(text="", id=url, metadata={"url": url}))
            out[url] = None if kept is True else kept[1]
        verdicts[mode] = out
    print(f"{len(urls)} gold-set URLs")
    for mode in SUBWORD_MATCHES:
        reasons = Counter(r for r in verdicts[mode].values() if r)
        dropped = sum(reasons.values())
        print(f"{mode:>9}: {dropped} dropped ({100 * dropped / len(urls):.1f}%)  {dict(reasons)}")
    for url in urls:
        token, substring = verdicts["token"][url], verdicts["substring"][url]
        if token != substring:
            words = matched_subwords(filters["substring"], url)
            print(f"  substring {substring or 'kept'} / token {token or 'kept'}: {url}  (sub-words: {words})")


if __name__ == "__main__":
    main()
