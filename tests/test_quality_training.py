"""Classifier training (seeded, reproducible, measured), scoring and the datatrove steps, on real shared data.

One small training run per module (two classifiers, ~150 documents a class, 16-dim vectors) feeds every test that
needs a model; the tiny built-in config trains the same way with more data.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml

from curation.quality.scorer import QualityScorer, normalize_text
from curation.quality.steps import QualityBuckets, QualityScores
from curation.quality.thresholds import QualityThresholds, entry_scores
from curation.quality.training import (
    TrainQualityConfig,
    build_training_set,
    load_train_config,
    read_validation_labels,
    tiny_config,
    train_quality,
)
from nano2.contracts.documents import SUBSET_KEY, TOKEN_COUNT, Meta
from nano2.errors import Nano2Error
from nano2.manifest import read_manifest

pytestmark = pytest.mark.realdata

WEB_NEGATIVES = [
    {"kind": "jsonl", "path": "web/ccnet_cc_en_head_*.jsonl"},
    {"kind": "warc", "path": "web/*.warc.gz"},
    {"kind": "html-jsonl", "path": "web/trafilatura_eval_dev.jsonl.gz", "max_docs": 200},
]


def small_config(**overrides) -> dict:
    config = {
        "name": "test",
        "seed": 7,
        "max_docs_per_class": 150,
        "fasttext": {"dim": 16, "bucket": 20_000, "epoch": 5},
        "classifiers": [
            {
                "name": "gsm8k",
                "positives": [
                    {
                        "kind": "jsonl",
                        "path": "evals/gsm8k_train.jsonl.gz",
                        "text_fields": ["question", "answer"],
                        "max_docs": 200,
                    }
                ],
                "negatives": WEB_NEGATIVES,
            },
            {"name": "pydoc", "positives": [{"kind": "pydoc-topics"}], "negatives": WEB_NEGATIVES},
        ],
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("quality") / "models"
    report = train_quality(TrainQualityConfig.model_validate(small_config()), out, data_root=shared_data)
    return out, report


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _holdout_texts(shared_data: Path) -> list[str]:
    cfg = TrainQualityConfig.model_validate(small_config())
    return [text for _, text in build_training_set(cfg.classifiers[0], cfg, shared_data).holdout]


# --- training --------------------------------------------------------------------------------------------------


def test_training_is_reproducible_from_the_seed(trained, shared_data, tmp_path):
    first_dir, _ = trained
    again = tmp_path / "again"
    train_quality(TrainQualityConfig.model_validate(small_config()), again, data_root=shared_data)
    texts = _holdout_texts(shared_data)
    for name in ("gsm8k", "pydoc"):
        assert _sha256(first_dir / name / "model.bin") == _sha256(again / name / "model.bin")
        assert read_manifest(first_dir / name).id == read_manifest(again / name).id  # same data, code, seed
        first = QualityScorer([{"name": name, "path": str(first_dir / name)}]).score_many(texts)
        second = QualityScorer([{"name": name, "path": str(again / name)}]).score_many(texts)
        assert first == second
    other_seed = tmp_path / "other-seed"
    config = small_config(seed=8)
    config["classifiers"] = config["classifiers"][:1]
    train_quality(TrainQualityConfig.model_validate(config), other_seed, data_root=shared_data)
    assert _sha256(other_seed / "gsm8k" / "model.bin") != _sha256(first_dir / "gsm8k" / "model.bin")


def test_training_set_is_balanced_split_and_free_of_validation_text(shared_data):
    cfg = TrainQualityConfig.model_validate(small_config())
    validation_texts, _ = read_validation_labels(shared_data / cfg.validation.dclm_labels)
    keys = {normalize_text(t) for t in validation_texts}
    training_set = build_training_set(cfg.classifiers[0], cfg, shared_data, validation_keys=keys)
    summary = training_set.summary()
    assert summary["train"]["hq"] == summary["train"]["cc"] == 120
    assert summary["holdout"]["hq"] == summary["holdout"]["cc"] == 30
    train_keys = {normalize_text(t) for _, t in training_set.train}
    holdout_keys = {normalize_text(t) for _, t in training_set.holdout}
    assert not train_keys & holdout_keys
    assert not (train_keys | holdout_keys) & keys
    assert [s["source"] for s in summary["negatives"]] == [
        "jsonl:web/ccnet_cc_en_head_*.jsonl",
        "warc:web/*.warc.gz",
        "html-jsonl:web/trafilatura_eval_dev.jsonl.gz",
    ]
    assert all(s["used"] > 0 for s in summary["negatives"] + summary["positives"])


def test_classifier_manifest_records_data_params_and_metrics(trained, shared_data):
    out, report = trained
    manifest = read_manifest(out / "gsm8k")
    assert manifest.kind == "quality-classifier" and manifest.name == "gsm8k"
    assert [f.path for f in manifest.files] == ["model.bin"]
    assert manifest.files[0].sha256 == _sha256(out / "gsm8k" / "model.bin")
    input_paths = {Path(i.path).name for i in manifest.inputs}
    assert {"gsm8k_train.jsonl.gz", "dclm_human_quality_labels_dev.jsonl", "trafilatura_eval_dev.jsonl.gz"} <= (
        input_paths
    )
    assert all(i.content_hash for i in manifest.inputs)
    extra = manifest.extra
    assert extra["normalization"] == "lower-nopunct"
    assert extra["fasttext_args"] | {"seed": 7} == {
        "lr": 0.1, "dim": 16, "ws": 5, "epoch": 5, "minCount": 1, "wordNgrams": 2, "bucket": 20_000,
        "loss": "softmax", "thread": 1, "seed": 7,
    }  # fmt: skip
    holdout = extra["holdout_metrics"]
    assert holdout["documents"] == 60 and holdout["positives"] == 30
    assert {"precision", "recall", "f1", "accuracy", "auc"} <= set(holdout)
    assert holdout["auc"] > 0.8  # the two classes are easy to tell apart
    assert extra["training_data"]["train"] == {"hq": 120, "cc": 120}
    assert len(extra["training_data"]["train_file_sha256"]) == 64
    assert manifest.stats.documents == 300 and manifest.stats.by["label"]["hq"].documents == 150

    top = read_manifest(out)
    assert top.kind == "quality-classifier-set"
    assert {i.manifest_id for i in top.inputs} == {r.manifest_id for r in report.classifiers}
    assert set(top.extra["classifiers"]) == {"gsm8k", "pydoc"}


def test_agreement_with_dclm_human_labels_is_measured(trained, shared_data):
    """Reported, not gated: positives here are math and Python docs, not DCLM's OpenHermes/ELI5."""
    out, report = trained
    for clf in report.classifiers:
        dclm = clf.dclm
        assert dclm is not None and dclm["documents"] == 344
        assert 0.0 <= dclm["auc"] <= 1.0 and 0.0 <= dclm["accuracy"] <= 1.0
        assert abs(dclm["predicted_keep_rate"] - dclm["base_rate"]) < 0.05
        assert read_manifest(out / clf.name).extra["dclm_human_agreement"]["auc"] == dclm["auc"]
        print(f"{clf.name}: DCLM human-label AUC {dclm['auc']:.3f}, accuracy at base rate {dclm['accuracy']:.3f}")
    ensemble = report.ensemble_dclm
    assert ensemble is not None and ensemble["token_counter"] == "default"
    assert sum(v["documents"] for v in ensemble["by_level"].values()) == 344
    print(f"ensemble bucket AUC {ensemble['bucket_auc']:.3f}")
    assert ensemble["bucket_auc"] > 0.5, "the ensemble should rank human keeps above drops at least a little"


def test_cli_trains_and_prints_a_summary(cli, tmp_path, shared_data):
    config = small_config(data_root=str(shared_data))
    config["classifiers"] = config["classifiers"][1:]
    path = tmp_path / "quality.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = cli("curate", "train-quality", path, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    for needle in ("pydoc", "held-out P", "human AUC", "ensemble (max bucket)", "quality-classifier-set"):
        assert needle in result.out
    assert (tmp_path / "out" / "pydoc" / "model.bin").is_file()
    assert read_manifest(tmp_path / "out" / "pydoc").producer.config_path == str(path)


def test_cli_config_errors_are_one_line(cli, tmp_path, shared_data):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(small_config(epochs=3)))
    result = cli("curate", "train-quality", bad, "-o", tmp_path / "out")
    assert result.code == 2
    assert f"{bad}: epochs: unknown key; expected one of: name, data_root, seed" in result.err

    missing = small_config(data_root=str(shared_data))
    missing["classifiers"][0]["positives"][0]["path"] = "evals/nope_*.jsonl"
    path = tmp_path / "missing.yaml"
    path.write_text(yaml.safe_dump(missing))
    result = cli("curate", "train-quality", path, "-o", tmp_path / "out")
    assert result.code == 2 and "evals/nope_*.jsonl: no files match" in result.err


def test_builtin_tiny_config_trains_an_ensemble_that_agrees_with_humans(cli, tmp_path, shared_data, monkeypatch):
    cfg, path = load_train_config("tiny")
    assert path is None and cfg == tiny_config()
    assert [c.name for c in cfg.classifiers] == ["gsm8k-readmes", "pydoc-stdlib", "web-prose"]
    assert cfg.fasttext.word_ngrams == 2 and cfg.fasttext.thread == 1
    monkeypatch.setenv("NANO2_SHARED_DATA", str(shared_data))
    result = cli("curate", "train-quality", "tiny", "-o", tmp_path / "tiny")
    assert result.code == 0, result.err
    extra = read_manifest(tmp_path / "tiny").extra
    ensemble = extra["ensemble_dclm_human_agreement"]
    per_classifier = {name: c["dclm_human_agreement"]["auc"] for name, c in extra["classifiers"].items()}
    print(f"tiny: human-label AUC per classifier {per_classifier}, ensemble bucket AUC {ensemble['bucket_auc']:.3f}")
    assert ensemble["bucket_auc"] > 0.5
    # measured 0.834 (bench_quality --agreement): above the plain length of the text (0.745); labels never trained on
    assert per_classifier["web-prose"] > 0.78
    assert (tmp_path / "tiny" / "web-prose" / "model.json").is_file()


# --- scoring ---------------------------------------------------------------------------------------------------


def _specs(out: Path) -> list[dict]:
    return [{"name": "gsm8k", "path": str(out / "gsm8k")}, {"name": "pydoc", "path": str(out / "pydoc" / "model.bin")}]


def test_scorer_scores_every_text_including_empty_ones(trained):
    out, _ = trained
    scorer = QualityScorer(_specs(out))
    for text in ("", "   \n\n ", "Natalia sold clips to 48 of her friends in April.", "ü" * 10_000):
        scores = scorer.score(text)
        assert set(scores) == {"gsm8k", "pydoc"}
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in scores.values())
    math_text = "Janet has 3 apples and buys 5 more. How many apples does she have? She has 3 + 5 = 8 apples."
    assert scorer.score(math_text)["gsm8k"] > 0.5


def test_scorer_errors_name_the_problem(trained, tmp_path):
    out, _ = trained
    with pytest.raises(Nano2Error, match=r"quality classifier model not found: .*/nowhere/model\.bin"):
        QualityScorer([{"name": "x", "path": str(tmp_path / "nowhere" / "model.bin")}])
    (tmp_path / "empty-dir").mkdir()
    with pytest.raises(Nano2Error, match=r"empty-dir \(no model\.bin or model\.json inside\)"):
        QualityScorer([{"name": "x", "path": str(tmp_path / "empty-dir")}])
    with pytest.raises(Nano2Error, match="duplicate classifier names: a"):
        QualityScorer([{"name": "a", "path": str(out / "gsm8k")}, {"name": "a", "path": str(out / "pydoc")}])
    with pytest.raises(Nano2Error, match=r"has labels \['__label__"):
        QualityScorer([{"name": "x", "path": str(out / "gsm8k"), "label": "__label__nope"}]).score("text")
    not_a_model = tmp_path / "junk.bin"
    not_a_model.write_bytes(b"not a model")
    with pytest.raises(Nano2Error, match=r"junk\.bin: not a fastText model"):
        QualityScorer([{"name": "x", "path": str(not_a_model)}]).score("text")


def test_scorer_uses_the_normalisation_its_model_was_trained_with(trained):
    out, _ = trained
    auto = QualityScorer([{"name": "g", "path": str(out / "gsm8k")}])
    explicit = QualityScorer([{"name": "g", "path": str(out / "gsm8k"), "normalization": "lower-nopunct"}])
    raw = QualityScorer([{"name": "g", "path": str(out / "gsm8k"), "normalization": "newlines"}])
    text = "HOW many APPLES? Janet (age 7) has 3... She buys 5!"
    assert auto.score(text) == explicit.score(text) != raw.score(text)


def test_scorer_pickles_without_its_models(trained):
    out, _ = trained
    scorer = QualityScorer(_specs(out))
    expected = scorer.score("Some text about Python's for statement.")
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone._loaded is None and len(pickle.dumps(scorer)) < 2000
    assert clone.score("Some text about Python's for statement.") == expected


# --- datatrove steps -------------------------------------------------------------------------------------------


def _documents(shared_data: Path, n: int = 60):
    from datatrove.data import Document

    texts, _ = read_validation_labels(shared_data / "quality" / "dclm_human_quality_labels_dev.jsonl")
    return [
        Document(
            text=text,
            id=f"dclm-{i}",
            metadata={Meta.URL: f"https://example.org/{i}", TOKEN_COUNT: len(text.split())},
        )
        for i, text in enumerate(texts[:n])
    ]


def _score_and_fit(out: Path, docs):
    scored = list(QualityScores(_specs(out)).run(iter(docs)))
    return scored, QualityThresholds.fit_documents(scored)


def test_buckets_step_writes_ensemble_max_and_level(trained, shared_data):
    out, _ = trained
    scored, thresholds = _score_and_fit(out, _documents(shared_data))
    step = QualityBuckets(thresholds)
    bucketed = list(step.run(iter(scored)))
    assert len(bucketed) == 60
    for doc in bucketed:
        meta = doc.metadata
        entries = {e["classifier"]: e for e in meta[Meta.QUALITY]}
        assert set(entries) == {"gsm8k", "pydoc"}
        for name, entry in entries.items():
            assert entry["bucket"] == thresholds.bucket_of(name, entry["score"])
        assert meta[Meta.BUCKET] == max(e["bucket"] for e in entries.values())
        assert meta[Meta.LEVEL] == thresholds.levels.level_of(meta[Meta.BUCKET])
    levels_counted = sum(v.n for k, v in step.stats.stats.items() if k.startswith("level_"))
    assert levels_counted == 60

    from datatrove.data import Document

    with pytest.raises(Nano2Error, match="document bare: no metadata\\['quality'\\]"):
        list(QualityBuckets(thresholds).run(iter([Document(text="x", id="bare")])))
    french = Document(text="x", id="fr", metadata={Meta.LANGUAGE: "fr"})
    assert list(QualityBuckets(thresholds).run(iter([french]))) == [french]  # only English is scored
    assert Meta.LEVEL not in french.metadata


def _bucket_rows(files: list[Path]) -> dict[str, tuple]:
    """id -> (partition, ensemble bucket, gsm8k score, pydoc score, gsm8k bucket, pydoc bucket)."""
    rows = duckdb.sql(
        f"SELECT id, {SUBSET_KEY}, metadata.bucket, metadata.quality "
        f"FROM read_parquet({[str(f) for f in files]}, hive_partitioning=true)"
    ).fetchall()
    out = {}
    for doc_id, subset, bucket, quality in rows:
        entries = {e["classifier"]: e for e in quality}
        out[doc_id] = (subset, bucket, entries["gsm8k"]["score"], entries["pydoc"]["score"],
                       entries["gsm8k"]["bucket"], entries["pydoc"]["bucket"])  # fmt: skip
    return out


def test_same_document_gets_the_same_bucket_on_every_worker(trained, shared_data, tmp_path):
    """Two datatrove tasks in two spawned processes (each loading the models itself) bucket the same documents
    identically and as this process does; the router writes them to `web/subset=<level>/<rank>.parquet`."""
    from datatrove.executor import LocalPipelineExecutor

    from curation.web.routing import RouteWriter

    out, _ = trained
    docs = _documents(shared_data, n=40)
    scored, thresholds = _score_and_fit(out, [d.__class__(d.text, d.id, metadata=dict(d.metadata)) for d in docs])
    LocalPipelineExecutor(
        [
            docs,  # a plain list is not sharded: both tasks process every document
            QualityScores(_specs(out)),
            QualityBuckets(thresholds.save(tmp_path / "thresholds.json")),
            RouteWriter(tmp_path / "out"),
        ],
        tasks=2,
        workers=2,
        logging_dir=str(tmp_path / "logs"),
        start_method="spawn",
    ).run()
    web = tmp_path / "out" / "web"
    task0 = _bucket_rows(sorted(web.glob(f"{SUBSET_KEY}=*/00000.parquet")))
    task1 = _bucket_rows(sorted(web.glob(f"{SUBSET_KEY}=*/00001.parquet")))
    here = {}
    for d in scored:
        scores = entry_scores(d.metadata[Meta.QUALITY])
        a = thresholds.assign(scores)
        here[d.id] = (a.level, a.bucket, scores["gsm8k"], scores["pydoc"], a.buckets["gsm8k"], a.buckets["pydoc"])
    assert len(here) == 40
    assert task0 == task1 == here
    assert {p.name.removeprefix(f"{SUBSET_KEY}=") for p in web.glob(f"{SUBSET_KEY}=*")} == {
        row[0] for row in here.values()
    }


def test_thresholds_fit_on_scored_documents_are_equal_token(trained, shared_data):
    out, _ = trained
    scored, thresholds = _score_and_fit(out, _documents(shared_data, n=300))
    tokens = np.array([d.metadata[TOKEN_COUNT] for d in scored])
    for name, t in thresholds.classifiers.items():
        assert sum(t.bin_tokens) == tokens.sum() == t.sample_tokens
        assert max(abs(m - tokens.sum() / 20) for m in t.bin_tokens) <= tokens.max()
        assert t.min_score <= t.cut_points[0] and t.cut_points[-1] <= t.max_score, name
    assert json.loads(thresholds.to_json())["classifiers"].keys() == {"gsm8k", "pydoc"}
