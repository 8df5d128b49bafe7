"""Time the quality-bucketing hot paths: fitting 20 token-weighted thresholds and bucketing documents.

Fits thresholds for 3 classifiers on a 1M-document sample (the order of Nemotron-CC's 1% threshold sample of a
snapshot shard), then assigns ensemble buckets and levels per document the way a worker does, and vectorised.
With `--models DIR` (a `nano2 curate train-quality` output) it also times fastText scoring of real web text.

`--agreement` trains the built-in `tiny` classifier set (labels never seen in training) and scores the dev DCLM
human keep/drop labels: each classifier's AUC, the ensemble's (the paper's method: max over token-weighted 20
buckets), the plain length of the text as a baseline, and a length-controlled AUC (the mean of the AUCs within
length terciles, so a classifier that only measures length scores about 0.5), each with a 95% bootstrap interval
over documents, and the AUC gain over length by a paired bootstrap. Which members the ensemble holds is also
decided by 2-fold cross-validation on the labels (chosen on one half, scored on the other); the ensemble AUCs are
printed last.

    .venv/bin/python benchmarks/bench_quality.py --agreement [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from curation.quality.metrics import roc_auc
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


def length_controlled_auc(labels: np.ndarray, scores: np.ndarray, lengths: np.ndarray) -> float:
    """Mean AUC within the three length terciles (a tercile with one class only is skipped)."""
    edges = np.quantile(lengths, [1 / 3, 2 / 3])
    tercile = np.searchsorted(edges, lengths, side="right")
    aucs = [roc_auc(labels[tercile == t], scores[tercile == t]) for t in range(3)]
    valid = [a for a in aucs if a is not None]
    return float(np.mean(valid)) if valid else float("nan")


def with_interval(statistic, labels: np.ndarray, *columns: np.ndarray, n: int = 1000, seed: int = 0) -> str:
    """'0.712 [0.655, 0.766]': the statistic and its 95% percentile bootstrap interval over documents."""
    rng = np.random.default_rng(seed)
    point = statistic(labels, *columns)
    draws = []
    for _ in range(n):
        index = rng.integers(0, len(labels), len(labels))
        value = statistic(labels[index], *(c[index] for c in columns))
        if value is not None and not np.isnan(value):
            draws.append(value)
    low, high = np.percentile(draws, [2.5, 97.5])
    return f"{point:.3f} [{low:.3f}, {high:.3f}]"


def bench_agreement(data: Path) -> None:
    import tempfile

    from curation.quality.scorer import ClassifierSpec, QualityScorer
    from curation.quality.training import count_tokens, read_validation_labels, tiny_config, train_quality

    cfg = tiny_config()
    texts, label_list = read_validation_labels(data / cfg.validation.dclm_labels)
    labels = np.array(label_list)
    with tempfile.TemporaryDirectory() as tmp:
        report = train_quality(cfg, Path(tmp), data_root=data)
        names = [r.name for r in report.classifiers]
        scorer = QualityScorer([ClassifierSpec(name=r.name, path=str(r.directory)) for r in report.classifiers])
        scores = scorer.score_many(texts)
    tokens, tokenizer = count_tokens(texts)
    # buckets fit on the labelled texts' own token-weighted scores: a rank transform, the labels are not used
    thresholds = QualityThresholds.fit({n: [s[n] for s in scores] for n in names}, tokens)
    buckets = np.array([thresholds.assign(s).bucket for s in scores], dtype=np.float64)
    lengths = np.array([len(t) for t in texts], dtype=np.float64)
    rows = {f"classifier {n}": np.array([s[n] for s in scores]) for n in names}
    rows["length (characters)"] = lengths
    rows["ensemble (max of 20 token-weighted buckets)"] = buckets
    print(
        f"{len(texts)} dev documents with human labels ({labels.mean():.1%} keep), tokens by {tokenizer}; "
        "95% bootstrap intervals over documents"
    )
    print(f"{'scorer':45s} {'AUC':>22s} {'length-controlled AUC':>24s} {'score range':>16s}")
    for name, values in rows.items():
        auc = with_interval(roc_auc, labels, values)
        controlled = with_interval(length_controlled_auc, labels, values, lengths)
        print(f"{name:45s} {auc:>22s} {controlled:>24s} {values.min():7.3f}-{values.max():<7.3f}")
    member_buckets = {
        n: assign_buckets(np.array([s[n] for s in scores]), thresholds.classifiers[n].cut_points) for n in names
    }
    chosen, cv_buckets = cross_validated_members(labels, member_buckets, texts)
    print(
        f"{'ensemble, members chosen by 2-fold CV':45s} {with_interval(roc_auc, labels, cv_buckets):>22s} "
        f"{with_interval(length_controlled_auc, labels, cv_buckets, lengths):>24s}   chosen per fold: {chosen}"
    )

    def auc_gain(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return roc_auc(y, a) - roc_auc(y, b)

    print(
        "AUC gain over length, paired bootstrap: web-prose "
        + with_interval(auc_gain, labels, rows["classifier web-prose"], lengths)
        + "; all-member ensemble "
        + with_interval(auc_gain, labels, buckets, lengths)
        + "; CV-chosen ensemble "
        + with_interval(auc_gain, labels, cv_buckets, lengths)
    )
    print(
        "ensemble AUC (all members) "
        + with_interval(roc_auc, labels, buckets)
        + f"; members chosen by 2-fold CV {roc_auc(labels, cv_buckets):.3f}; length {roc_auc(labels, lengths):.3f} "
        "(goal: >= 0.80 and above length)"
    )


def cross_validated_members(
    labels: np.ndarray, member_buckets: dict[str, np.ndarray], texts: list[str]
) -> tuple[list[list[str]], np.ndarray]:
    """Which classifiers the ensemble should hold, decided without scoring on the labels that decide it: the
    documents split in two by sha1(text); the subset of members whose max-bucket ensemble has the best AUC on one
    half buckets the other half, and the reverse. Returns each fold's choice and the out-of-fold ensemble buckets."""
    import hashlib
    from itertools import combinations

    fold = np.array([int(hashlib.sha1(t.encode("utf-8")).hexdigest(), 16) % 2 for t in texts])
    names = list(member_buckets)
    subsets = [list(c) for k in range(1, len(names) + 1) for c in combinations(names, k)]
    out_of_fold = np.zeros(len(labels))
    chosen = []
    for held_out in (0, 1):
        train = fold != held_out
        best = max(
            subsets,
            key=lambda subset: roc_auc(labels[train], np.max([member_buckets[n][train] for n in subset], axis=0)),
        )
        chosen.append(best)
        out_of_fold[~train] = np.max([member_buckets[n][~train] for n in best], axis=0)
    return chosen, out_of_fold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="a train-quality output directory, to also time fastText scoring")
    parser.add_argument("--agreement", action="store_true", help="AUCs against the dev human labels (no timing)")
    parser.add_argument("--data", default=os.environ.get("NANO2_SHARED_DATA", "../shared/data"))
    args = parser.parse_args()
    if args.agreement:
        bench_agreement(Path(args.data))
        return
    bench_assign(bench_thresholds())
    if args.models:
        bench_scoring(args.models)


if __name__ == "__main__":
    main()
