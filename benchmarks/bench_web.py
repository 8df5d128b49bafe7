"""CPU time per document of the full web pipeline vs a FineWeb-style datatrove reference, side by side.

Input: the real WARC samples of ../shared/data/web repeated N times (no invented text), a few thousand records.
Reference: datatrove's WarcReader -> Trafilatura -> Gopher repetition -> Gopher quality -> C4 -> FineWeb filters
-> JSONL writer, 2 workers (the FineWeb example's stages, no language ID, dedup or quality). datatrove's English
word tokenizer needs spaCy, which we do not install; both pipelines use our regex tokenizer (RegexWordTokenizer),
so the filters do the same work in both. Ours: `nano2 curate web` with everything on (URL filter, fast extraction,
language ID, heuristics, exact + MinHash dedup, two quality classifiers, decisions table, manifests).

Each pipeline runs in a fresh child process (`cputime.measure_python`); its CPU time is user + system of the whole
process tree, datatrove's pool workers included, so the ratio does not move with the load on the machine. The two
pipelines alternate, `--runs` times; the ratio (median of the paired ratios, and their range) is printed last.

Usage: python benchmarks/bench_web.py [--repeat 20] [--workers 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import yaml
from cputime import Samples, compare, measure_python

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


def reference_steps(input_dir: str) -> list:
    """The FineWeb-style datatrove steps: WARC -> trafilatura -> Gopher, C4 and FineWeb filters."""
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.readers import WarcReader

    from curation.web.words import RegexWordTokenizer

    tok = RegexWordTokenizer()
    return [
        WarcReader(input_dir, glob_pattern="*.warc.gz"),
        Trafilatura(favour_precision=True),
        GopherRepetitionFilter(language=tok),
        GopherQualityFilter(language=tok),
        C4QualityFilter(filter_no_terminal_punct=False, language=tok),
        FineWebQualityFilter(language=tok),
    ]


def warm_machine_caches() -> None:
    """Build what the web pipeline caches once per machine (the URL filter's block-list hashes under
    `~/.cache/nano2/`, 20 s of CPU on a new machine), so no measured run pays for it."""
    from curation.web.steps import OfflineURLFilter

    OfflineURLFilter().download_data()


def run_reference(input_dir: str, work: str, workers: int) -> None:
    """The FineWeb-style datatrove pipeline (run in a child by `measure_python`)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.writers import JsonlWriter

    out = Path(work)
    shutil.rmtree(out, ignore_errors=True)
    pipeline = [*reference_steps(input_dir), JsonlWriter(str(out / "out"))]
    # fork, as our executor does (curation/executors.py): forkserver workers are grandchildren nobody waits for,
    # so their CPU time would escape the measurement
    LocalPipelineExecutor(pipeline, tasks=4, workers=workers, logging_dir=str(out / "logs"), start_method="fork").run()


def run_ours(input_dir: str, work: str, workers: int, shared: str, quality_dir: str) -> None:
    """`nano2 curate web` with every stage on (run in a child by `measure_python`)."""
    from curation.web.config import load_web_config
    from curation.web.pipeline import run_web

    out = Path(work)
    shutil.rmtree(out, ignore_errors=True)
    banlist = Path(shared) / "web/banlists/refinedweb_banned_words_hard_reverse_engineered.txt"
    cfg = {
        "name": "bench",
        "output_dir": str(out / "curated"),
        "work_dir": str(out / "work"),
        "inputs": [{"kind": "warc", "path": input_dir, "glob": "*.warc.gz"}],
        "executor": {"kind": "local", "tasks": 4, "workers": workers},
        "url_filter": {"banned_subwords_files": [str(banlist)]},
        "quality": {"classifiers": [{"name": n, "path": str(Path(quality_dir) / n)} for n in CLASSIFIERS]},
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "web.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_web(load_web_config(path), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="copies of the shared WARC samples in the input")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="side-by-side repetitions of both pipelines")
    args = parser.parse_args()
    shared = Path(os.environ.get("NANO2_SHARED_DATA", "../shared/data")).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        records = make_input(shared, tmp / "input", args.repeat)
        from curation.quality.training import tiny_config, train_quality

        train_quality(tiny_config(), tmp / "quality", data_root=shared)  # not timed
        warm_machine_caches()
        env = dict(os.environ, NANO2_SHARED_DATA=str(shared))
        ours = Samples("ours")
        reference = Samples("reference")
        for _ in range(args.runs):  # interleaved, so a change of load hits both sides alike
            reference.runs += measure_python(
                "bench_web:run_reference", [str(tmp / "input"), str(tmp / "ref"), args.workers], repeats=1, env=env
            ).runs
            ours.runs += measure_python(
                "bench_web:run_ours",
                [str(tmp / "input"), str(tmp / "ours"), args.workers, str(shared), str(tmp / "quality")],
                repeats=1,
                env=env,
            ).runs
        print(f"input: {records:,} WARC records ({args.repeat} x the shared samples), {args.workers} workers")
        print(f"load average: {os.getloadavg()[0]:.2f} (CPU time of the whole process tree, workers included)")
        print(
            f"reference (WarcReader, Trafilatura, Gopher x2, C4, FineWeb): "
            f"{reference.describe(per=records / 1000, unit='CPU ms/doc')}"
        )
        print(
            f"ours (all stages incl. langid, dedup, quality, decisions): "
            f"{ours.describe(per=records / 1000, unit='CPU ms/doc')}"
        )
        print(
            f"wall s per run: reference {[round(r.wall_s, 1) for r in reference.runs]}, "
            f"ours {[round(r.wall_s, 1) for r in ours.runs]}"
        )
        print(compare(ours, reference) + " (goal >= 3x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
