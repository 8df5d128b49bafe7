"""Time the quality-bucketing hot paths: fitting 20 token-weighted thresholds and bucketing documents.

Fits thresholds for 3 classifiers on a 1M-document sample (the order of Nemotron-CC's 1% threshold sample of a
snapshot shard), then assigns ensemble buckets and levels per document the way a worker does, and vectorised.
With `--models DIR` (a `nano2 curate train-quality` output) it also times fastText scoring of real web text.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from curation.quality.thresholds import QualityThresholds, assign_buckets, compute_thresholds

N_SAMPLE = 1_000_000
N_ASSIGN = 200_000
CLASSIFIERS = ("nemotron-edu", "mixtral-edu", "dclm-oh-eli5")


def bench_thresholds() -> QualityThresholds:
    rng = np.random.default_rng(0)
    tokens = rng.lognormal(6, 1, N_SAMPLE).astype(np.int64) + 1
    scores = {name: rng.beta(2, 2 + i, N_SAMPLE) for i, name in enumerate(CLASSIFIERS)}
    t0 = time.perf_counter()
    compute_thresholds(scores[CLASSIFIERS[0]], tokens)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    thresholds = QualityThresholds.fit(scores, tokens)
    fit = time.perf_counter() - t0
    print(f"compute_thresholds, {N_SAMPLE:,} docs: {one:.2f} s; QualityThresholds.fit x{len(CLASSIFIERS)}: {fit:.2f} s")
    return thresholds


def bench_assign(thresholds: QualityThresholds) -> None:
    rng = np.random.default_rng(1)
    docs = [{name: float(v) for name, v in zip(CLASSIFIERS, row, strict=True)} for row in rng.random((N_ASSIGN, 3))]
    t0 = time.perf_counter()
    levels = [thresholds.assign(d).level for d in docs]
    per_doc = time.perf_counter() - t0
    matrix = rng.random((N_ASSIGN, 3))
    t0 = time.perf_counter()
    ensemble = np.max(
        [assign_buckets(matrix[:, i], thresholds.classifiers[n].cut_points) for i, n in enumerate(CLASSIFIERS)], axis=0
    )
    vectorised = time.perf_counter() - t0
    print(
        f"assign (3 buckets + max + level), {N_ASSIGN:,} docs: {per_doc:.2f} s "
        f"({N_ASSIGN / per_doc:,.0f} docs/s); vectorised: {vectorised * 1000:.1f} ms "
        f"({len(set(levels))} levels, buckets {ensemble.min()}-{ensemble.max()})"
    )


def bench_scoring(models: str) -> None:
    from curation.quality.scorer import QualityScorer
    from curation.quality.sources import HtmlJsonlSource, default_data_root, read_source
    from nano2.manifest import read_manifest

    names = list(read_manifest(models).extra["classifiers"])
    scorer = QualityScorer([{"name": n, "path": f"{models}/{n}"} for n in names])
    pages = read_source(
        HtmlJsonlSource(kind="html-jsonl", path="web/trafilatura_eval_dev.jsonl.gz"),
        default_data_root(),
        seed=0,
        min_chars=1,
    ).texts
    scorer.score("warm up: load the models")
    t0 = time.perf_counter()
    scorer.score_many(pages)
    elapsed = time.perf_counter() - t0
    chars = sum(len(p) for p in pages)
    print(
        f"scoring {len(pages)} web pages x {len(names)} classifiers: {elapsed:.2f} s "
        f"({len(pages) / elapsed:,.0f} docs/s, {chars / elapsed / 1e6:.1f} MB text/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="a train-quality output directory, to also time fastText scoring")
    args = parser.parse_args()
    bench_assign(bench_thresholds())
    if args.models:
        bench_scoring(args.models)


if __name__ == "__main__":
    main()
