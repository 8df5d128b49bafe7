"""Documents/s per core of the full web pipeline vs a FineWeb-style datatrove reference, in one run.

Input: the real WARC samples of ../shared/data/web repeated N times (no invented text), a few thousand records.
Reference: datatrove's WarcReader -> Trafilatura -> Gopher repetition -> Gopher quality -> C4 -> FineWeb filters
-> JSONL writer, 2 workers (the FineWeb example's stages, no language ID, dedup or quality). datatrove's English
word tokenizer needs spaCy, which we do not install; both pipelines use our regex tokenizer (RegexWordTokenizer),
so the filters do the same work in both. Ours: `nano2 curate web` with everything on (URL filter, fast extraction,
language ID, heuristics, exact + MinHash dedup, two quality classifiers, decisions table, manifests).

Usage: python benchmarks/bench_web.py [--repeat 80] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

CLASSIFIERS = ("gsm8k-readmes", "pydoc-stdlib")


def make_input(shared: Path, out: Path, repeat: int) -> int:
    """Concatenate the WARC samples `repeat` times (gzip members concatenate into a valid WARC)."""
    out.mkdir(parents=True, exist_ok=True)
    samples = sorted((shared / "web").glob("*.warc.gz"))
    per_file = max(1, repeat // 4)
    for n_file, i in enumerate(range(0, repeat, per_file)):
        with open(out / f"part-{n_file:03d}.warc.gz", "wb") as fh:
            for _ in range(min(per_file, repeat - i)):
                for s in samples:
                    fh.write(s.read_bytes())
    from curation.web.readers import WarcDocuments

    return sum(1 for _ in WarcDocuments(str(out), glob_pattern="*.warc.gz").run()) + 2 * repeat  # + non-HTML


def run_reference(input_dir: Path, work: Path, workers: int) -> float:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    from curation.web.words import RegexWordTokenizer

    tok = RegexWordTokenizer()
    pipeline = [
        WarcReader(str(input_dir), glob_pattern="*.warc.gz"),
        Trafilatura(favour_precision=True),
        GopherRepetitionFilter(language=tok),
        GopherQualityFilter(language=tok),
        C4QualityFilter(filter_no_terminal_punct=False, language=tok),
        FineWebQualityFilter(language=tok),
        JsonlWriter(str(work / "out")),
    ]
    start = time.perf_counter()
    LocalPipelineExecutor(pipeline, tasks=4, workers=workers, logging_dir=str(work / "logs")).run()
    return time.perf_counter() - start


def run_ours(input_dir: Path, work: Path, workers: int, shared: Path, quality_dir: Path) -> float:
    from curation.web.config import load_web_config
    from curation.web.pipeline import run_web

    banlist = shared / "web/banlists/refinedweb_banned_words_hard_reverse_engineered.txt"
    cfg = {
        "name": "bench",
        "output_dir": str(work / "curated"),
        "work_dir": str(work / "work"),
        "inputs": [{"kind": "warc", "path": str(input_dir), "glob": "*.warc.gz"}],
        "executor": {"kind": "local", "tasks": 4, "workers": workers},
        "url_filter": {"banned_subwords_files": [str(banlist)]},
        "quality": {"classifiers": [{"name": n, "path": str(quality_dir / n)} for n in CLASSIFIERS]},
    }
    work.mkdir(parents=True, exist_ok=True)
    path = work / "web.yaml"
    path.write_text(yaml.safe_dump(cfg))
    start = time.perf_counter()
    run_web(load_web_config(path), path)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=80)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    shared = Path(os.environ.get("NANO2_SHARED_DATA", "../shared/data"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        records = make_input(shared, tmp / "input", args.repeat)
        from curation.quality.training import tiny_config, train_quality

        train_quality(tiny_config(), tmp / "quality", data_root=shared)  # not timed
        t_ref = run_reference(tmp / "input", tmp / "ref", args.workers)
        t_ours = run_ours(tmp / "input", tmp / "ours", args.workers, shared, tmp / "quality")
        cores = args.workers
        ref_rate, our_rate = records / t_ref / cores, records / t_ours / cores
        print(f"input: {records:,} WARC records ({args.repeat} x the shared samples), {cores} workers")
        print(
            f"reference (WarcReader, Trafilatura, Gopher x2, C4, FineWeb): {t_ref:6.1f} s  {ref_rate:7.1f} docs/s/core"
        )
        print(
            f"ours (all stages incl. langid, dedup, quality, decisions): {t_ours:6.1f} s  {our_rate:7.1f} docs/s/core"
        )
        print(f"ratio ours / reference: {our_rate / ref_rate:.2f}x (goal >= 2x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
