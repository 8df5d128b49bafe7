"""Corpus-wide thresholds over score shards (polars), the unfitted outcome, and levelling a second run on the
first run's scale (`curate web --thresholds`)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from datatrove.data import Document

from curation.quality.levels import UNSCORED
from curation.quality.steps import QualityBuckets
from curation.quality.thresholds import (
    QualityThresholds,
    UnfittedThresholds,
    compute_thresholds,
    fit_corpus_thresholds,
    load_thresholds_artifact,
)
from curation.web.quality_stage import CorpusThresholds, ScoreShards
from nano2.contracts.documents import TOKEN_COUNT, Meta, quality_entries
from nano2.errors import ConfigError, Nano2Error


def _write_shards(folder: Path, scores: dict[str, np.ndarray], tokens: np.ndarray, cuts: list[int]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    bounds = [0, *cuts, len(tokens)]
    for rank, (a, b) in enumerate(itertools.pairwise(bounds)):
        columns = {"id": [f"d{i}" for i in range(a, b)], "token_count": tokens[a:b], "language": ["en"] * (b - a)}
        columns |= {f"score:{name}": values[a:b] for name, values in scores.items()}
        path = folder / f"{rank:05d}.parquet"
        pq.write_table(pa.table(columns), path)
        files.append(str(path))
    return files


def test_corpus_fit_over_shards_equals_the_in_memory_fit(tmp_path):
    """Scores on a 1e-4 grid (many ties): the streamed, cell-grouped fit over 3 shards gives exactly the cut points
    of the in-memory fit over all documents, for each classifier."""
    rng = np.random.default_rng(7)
    n = 30_000
    scores = {"a": np.round(rng.beta(2, 5, n), 4), "b": np.round(rng.random(n), 4)}
    tokens = rng.integers(0, 4000, n)
    files = _write_shards(tmp_path, scores, tokens, [5_000, 17_000])
    fitted = fit_corpus_thresholds(files, ["a", "b"])
    assert isinstance(fitted, QualityThresholds)
    for name, values in scores.items():
        assert fitted.classifiers[name].cut_points == compute_thresholds(values, tokens)
    assert fitted.source.documents == n and fitted.source.tokens == int(tokens.sum()) and fitted.source.shards == 3
    one_shard = fit_corpus_thresholds(_write_shards(tmp_path / "one", scores, tokens, []), ["a", "b"])
    assert one_shard.classifiers == fitted.classifiers


def test_continuous_scores_put_every_document_in_its_cells_bin(tmp_path):
    """Unrounded scores: documents sharing a 1e-6 cell share a bucket, and bins hold equal tokens up to one cell."""
    rng = np.random.default_rng(3)
    n = 20_000
    scores = rng.random(n)
    tokens = rng.integers(1, 2000, n)
    fitted = fit_corpus_thresholds(_write_shards(tmp_path, {"q": scores}, tokens, [9_000]), ["q"])
    cuts = fitted.classifiers["q"].cut_points
    buckets = np.searchsorted(cuts, scores, side="right")
    mass = np.bincount(buckets, weights=tokens, minlength=20)
    cells = np.floor(scores / 1e-6).astype(np.int64)
    heaviest_cell = max(np.bincount(cells - cells.min(), weights=tokens))
    assert abs(mass - tokens.sum() / 20).max() <= heaviest_cell
    for cell in np.unique(cells)[:: max(1, n // 500)]:
        assert len(set(buckets[cells == cell])) == 1
    assert fitted.classifiers["q"].bin_tokens == [int(m) for m in mass]


def test_nothing_to_fit_is_a_named_outcome(tmp_path):
    assert fit_corpus_thresholds([], ["a"]).reason.startswith("no score shards")
    empty = _write_shards(tmp_path / "empty", {"a": np.array([], dtype=float)}, np.array([], dtype=np.int64), [])
    outcome = fit_corpus_thresholds(empty, ["a"])
    assert isinstance(outcome, UnfittedThresholds) and "survived" in outcome.reason
    assert outcome.source.documents == 0
    tokenless = _write_shards(tmp_path / "zero", {"a": np.array([0.2, 0.4])}, np.array([0, 0]), [])
    assert "no tokens" in fit_corpus_thresholds(tokenless, ["a"]).reason
    with pytest.raises(Nano2Error, match="no scores of classifier"):
        fit_corpus_thresholds(tokenless, ["other"])


def test_non_finite_scores_are_left_out_and_counted(tmp_path):
    scores = np.array([0.1, np.nan, 0.3, np.inf, 0.5, 0.7])
    tokens = np.array([10, 10, 10, 10, 10, 10])
    fitted = fit_corpus_thresholds(_write_shards(tmp_path, {"a": scores}, tokens, []), ["a"])
    assert fitted.source.dropped == {"non-finite a score": 2}
    kept = scores[np.isfinite(scores)]
    assert fitted.classifiers["a"].cut_points == compute_thresholds(kept, tokens[: len(kept)])
    assert fitted.classifiers["a"].max_score == 0.7


def _docs(scores: list[float], language: str = "en") -> list[Document]:
    return [
        Document(text="x", id=f"{language}{i}",
                 metadata={Meta.LANGUAGE: language, TOKEN_COUNT: 5 + i, Meta.QUALITY: quality_entries({"a": s})})
        for i, s in enumerate(scores)
    ]  # fmt: skip


def test_score_shards_feed_the_thresholds_step_and_buckets(tmp_path):
    """The pipeline's three quality steps by hand: shards per rank -> corpus fit -> buckets that agree with it."""
    english = _docs([i / 40 for i in range(40)])
    french = _docs([0.5], language="fr")
    for rank, part in enumerate([english[:25] + french, english[25:]]):
        passed = list(ScoreShards(tmp_path / "scores", ["a"]).run(iter(part), rank=rank, world_size=2))
        assert passed == part  # a pass-through step
    assert pq.read_table(tmp_path / "scores" / "00000.parquet").num_rows == 25  # French is not scored
    step = CorpusThresholds(tmp_path / "scores", tmp_path / "thresholds.json", ["a"], n_bins=20)
    list(step.run())
    fitted = load_thresholds_artifact(tmp_path / "thresholds.json")
    expected = compute_thresholds([i / 40 for i in range(40)], [5 + i for i in range(40)])
    assert fitted.classifiers["a"].cut_points == expected
    levelled = list(QualityBuckets(str(tmp_path / "thresholds.json")).run(iter(_docs([0.0, 0.99]))))
    assert [d.metadata[Meta.BUCKET] for d in levelled] == [0, 19]
    # a second run reusing the saved thresholds writes the same file, whatever its own scores are
    list(ScoreShards(tmp_path / "scores2", ["a"]).run(iter(_docs([0.9, 0.95]))))
    reuse = CorpusThresholds(tmp_path / "scores2", tmp_path / "t2.json", ["a"], 20, saved=tmp_path / "thresholds.json")
    list(reuse.run())
    assert load_thresholds_artifact(tmp_path / "t2.json") == fitted


def test_unfitted_thresholds_level_documents_unscored(tmp_path):
    list(ScoreShards(tmp_path / "scores", ["a"]).run(iter(_docs([0.3], language="fr"))))
    list(CorpusThresholds(tmp_path / "scores", tmp_path / "thresholds.json", ["a"], 20).run())
    saved = json.loads((tmp_path / "thresholds.json").read_text())
    assert saved["status"] == "unfitted" and saved["version"] == 1 and "survived" in saved["reason"]
    step = QualityBuckets(str(tmp_path / "thresholds.json"))
    out = list(step.run(iter(_docs([0.4, 0.6]))))
    assert [d.metadata[Meta.LEVEL] for d in out] == [UNSCORED, UNSCORED]
    assert step.stats["unscored_unfitted"].total == 2
    with pytest.raises(ConfigError, match="never fitted"):
        QualityThresholds.load(tmp_path / "thresholds.json")


# --- the whole web pipeline: a second input levelled with the first run's thresholds ---------------------------


def _web_config(tmp: Path, shared: Path, classifiers: list[dict], limit: int | None) -> Path:
    """`limit` pages of the trafilatura sample, or (None) the WARC sample: another crawl segment."""
    web = str(shared / "web")
    html = {"kind": "jsonl", "path": web, "glob": "trafilatura_eval_dev.jsonl.gz", "text_key": "html", "html": True}
    cfg = {
        "name": "web-thresholds",
        "output_dir": str(tmp / "curated"),
        "work_dir": str(tmp / "work"),
        "inputs": [{"kind": "warc", "path": web, "glob": "*.warc.gz"} if limit is None else {**html, "limit": limit}],
        "executor": {"kind": "local", "tasks": 1, "workers": 1},
        "dedup": {"minhash": {"enabled": False}},
        "quality": {"classifiers": classifiers},
    }  # fmt: skip
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "web.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory, shared_data):
    from curation.quality.training import tiny_config, train_quality

    out = tmp_path_factory.mktemp("quality")
    cfg = tiny_config()
    train_quality(cfg, out, data_root=shared_data)
    return [{"name": c.name, "path": str(out / c.name)} for c in cfg.classifiers]


@pytest.mark.realdata
def test_curate_web_levels_a_second_input_with_the_first_runs_thresholds(tmp_path, shared_data, classifiers, cli):
    import duckdb

    first = _web_config(tmp_path / "first", shared_data, classifiers, 150)
    assert cli("curate", "web", first).code == 0
    saved = tmp_path / "first" / "work" / "thresholds.json"
    fitted = load_thresholds_artifact(saved)
    assert isinstance(fitted, QualityThresholds) and fitted.source.documents >= 10
    second = _web_config(tmp_path / "second", shared_data, classifiers, None)
    result = cli("curate", "web", second, "--thresholds", saved)
    assert result.code == 0, result.err
    reused = json.loads((tmp_path / "second" / "curated" / "web" / "manifest.json").read_text())
    assert QualityThresholds.model_validate(reused["extra"]["quality_thresholds"]) == fitted
    files = [str(p) for p in (tmp_path / "second" / "curated" / "web").rglob("*.parquet")]
    rows = duckdb.sql(f"SELECT metadata.quality, metadata.bucket FROM read_parquet({files})").fetchall()
    assert rows
    for entries, bucket in rows:  # every bucket is the first run's: recomputed here from its cut points
        assert bucket == fitted.assign({e["classifier"]: e["score"] for e in entries}).bucket
    # the second segment alone would have fitted other cut points
    own = _web_config(tmp_path / "own", shared_data, classifiers, None)
    assert cli("curate", "web", own).code == 0
    assert load_thresholds_artifact(tmp_path / "own" / "work" / "thresholds.json").classifiers != fitted.classifiers
    bad = cli("curate", "web", second, "--thresholds", tmp_path / "missing.json", "--fresh")
    assert bad.code == 2 and "not found" in bad.err
