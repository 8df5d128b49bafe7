"""`nano2 curate train-quality`: DCLM's fastText quality-classifier recipe, seeded, with held-out and human metrics.

Recipe (DCLM `baselines/train_fasttext_classifier.py`, `fasttext-oh-eli5`): instruction/explanatory positives
(`__label__hq`) against random web negatives (`__label__cc`), classes balanced, fastText supervised with word
bigrams. Our data is what exists offline (see sources.py), so the classes are small and the hyperparameters are
DCLM's defaults scaled down: a smaller `dim` and hash `bucket` keep the model a few MB instead of GBs, more epochs
make up for fewer examples.

Per classifier: read and filter sources -> drop texts found in both classes or in the human-label validation set ->
balance (seeded) -> stratified held-out split -> write `__label__x text` lines (text normalised, `lower-nopunct` by
default) -> train in a subprocess (`thread: 1` + `seed` make it bit-reproducible) -> score the held-out split and
the DCLM human keep/drop labels through the same `QualityScorer` the pipeline uses -> `model.bin` + `manifest.json`.
With every classifier trained, the ensemble (token-weighted buckets, max) is scored against the human labels too.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curation.quality.metrics import agreement_at_base_rate, binary_metrics, roc_auc
from curation.quality.scorer import (
    CLASSIFIER_NAME,
    HIGH_QUALITY_LABEL,
    LOW_QUALITY_LABEL,
    MODEL_FILENAME,
    ClassifierSpec,
    Normalization,
    QualityScorer,
    normalize_text,
)
from curation.quality.sources import Source, SourceTexts, default_data_root, read_source
from curation.quality.text_features import TEXT_MODEL_FILENAME, train_text_feature_model
from curation.quality.thresholds import QualityThresholds
from nano2.config import load_yaml_model
from nano2.errors import Nano2Error
from nano2.manifest import InputRef, current_command, input_ref, write_manifest

TRAINING_NORMALIZATION: Normalization = "lower-nopunct"
CLASSIFIER_KIND = "quality-classifier"
CLASSIFIER_SET_KIND = "quality-classifier-set"
BUILTIN_CONFIGS = ("tiny",)
_REPO_ROOT = Path(__file__).resolve().parents[2]


class FastTextParams(BaseModel):
    """fastText supervised hyperparameters (DCLM's names in snake_case); `thread: 1` keeps training deterministic."""

    model_config = ConfigDict(extra="forbid")
    lr: float = Field(default=0.1, gt=0)
    dim: int = Field(default=100, gt=0)
    ws: int = Field(default=5, gt=0)
    epoch: int = Field(default=5, gt=0)
    min_count: int = Field(default=1, ge=1)
    word_ngrams: int = Field(default=2, ge=1, description="2 = bigrams, as fasttext-oh-eli5")
    bucket: int = Field(default=2_000_000, gt=0, description="hash buckets for n-grams; model size ~ bucket x dim")
    loss: Literal["softmax", "hs", "ns", "ova"] = "softmax"
    thread: int = Field(default=1, ge=1, description="more than 1 makes training non-deterministic")

    def to_fasttext_args(self, seed: int) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "dim": self.dim,
            "ws": self.ws,
            "epoch": self.epoch,
            "minCount": self.min_count,
            "wordNgrams": self.word_ngrams,
            "bucket": self.bucket,
            "loss": self.loss,
            "thread": self.thread,
            "seed": seed,
        }


class ValidationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dclm_labels: str | None = Field(
        default="quality/dclm_human_quality_labels_dev.jsonl",
        description="JSONL of human keep/drop labels (text, label 1=keep/0=drop), relative to the data root",
    )


class ClassifierTrainingConfig(BaseModel):
    """One classifier: its positive (high-quality) and negative (random web) sources."""

    model_config = ConfigDict(extra="forbid")
    name: str
    model: Literal["fasttext", "text-features"] = Field(
        default="fasttext",
        description="fastText over words and bigrams, or a logistic regression over document statistics "
        "(curation.quality.text_features: length, sentence ends, stop words, repeated lines ...)",
    )
    positives: list[Source] = Field(min_length=1)
    negatives: list[Source] = Field(min_length=1)
    fasttext: FastTextParams | None = Field(default=None, description="overrides the run's fasttext settings")

    @field_validator("name")
    @classmethod
    def _name_is_a_key(cls, name: str) -> str:
        if not CLASSIFIER_NAME.match(name):
            raise ValueError(f"classifier name {name!r}: use letters, digits, '_', '-' or '.'")
        return name


class TrainQualityConfig(BaseModel):
    """A train-quality run: shared settings plus the classifiers to train (each into OUTPUT/<name>/)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "quality"
    data_root: str | None = Field(
        default=None,
        description="root of relative source paths; relative to the config file; unset: $NANO2_SHARED_DATA or "
        "../shared/data",
    )
    seed: int = 0
    min_chars: int = Field(default=200, ge=1, description="drop texts (after chunking) shorter than this")
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    normalization: Literal["lower-nopunct", "newlines"] = Field(
        default=TRAINING_NORMALIZATION,
        description="how text is prepared for fastText, in training and (via the manifest) in scoring",
    )
    max_docs_per_class: int | None = Field(default=None, gt=0, description="cap on each class after balancing")
    fasttext: FastTextParams = Field(default_factory=FastTextParams)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    classifiers: list[ClassifierTrainingConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> TrainQualityConfig:
        names = [c.name for c in self.classifiers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate classifier names: {', '.join(duplicates)}")
        return self


# The web negatives both tiny classifiers share: CCNet documents, the two WARC samples and the trafilatura pages
# (whole documents, every language: English-only leaves ~120 web pages, too few for a stable classifier).
_TINY_WEB = [
    {"kind": "jsonl", "path": "web/ccnet_cc_en_head_*.jsonl"},
    {"kind": "warc", "path": "web/*.warc.gz"},
    {"kind": "html-jsonl", "path": "web/trafilatura_eval_dev.jsonl.gz"},
]
_GOLD_PAGES = "web/trafilatura_eval_dev.jsonl.gz"
# stdlib packages with prose-heavy docstrings (parsing all of the stdlib takes several seconds)
_TINY_STDLIB_MODULES = [
    "argparse", "asyncio", "collections", "concurrent", "contextlib", "dataclasses", "datetime", "decimal",
    "email", "functools", "http", "importlib", "json", "logging", "multiprocessing", "pathlib", "subprocess",
    "typing", "unittest", "urllib",
]  # fmt: skip


def tiny_config() -> TrainQualityConfig:
    """The built-in `tiny` setup: three differently sourced classifiers, seconds to train.

    * `gsm8k-readmes`: GSM8K train problems with worked answers + installed packages' READMEs;
    * `pydoc-stdlib`: Python's reference topics + standard-library docstrings;
    both against CCNet + WARC + trafilatura web text (about 520 pages);
    * `web-prose` (`text-features`: a logistic regression over document statistics, not fastText): the article
      text our extractor keeps from the trafilatura pages against the furniture it drops from them and the WARC
      pages. It sees the shape of a text (length, sentence ends, repeated lines), which fastText cannot.
    fastText as DCLM trains it (lr 0.1, 5 epochs, bigrams) with a small dim and hash table (models of about 20 MB).
    More epochs fit the held-out split no better and the human labels worse: the model then learns the positives'
    topics (math, Python) rather than what separates written prose from web boilerplate.
    """
    return TrainQualityConfig.model_validate(
        {
            "name": "tiny",
            "seed": 1234,
            "min_chars": 200,
            "holdout_fraction": 0.2,
            "max_docs_per_class": 600,
            "fasttext": {"lr": 0.1, "dim": 32, "epoch": 5, "word_ngrams": 2, "bucket": 100_000},
            "classifiers": [
                {
                    "name": "gsm8k-readmes",
                    "positives": [
                        {"kind": "jsonl", "path": "evals/gsm8k_train.jsonl.gz", "text_fields": ["question", "answer"],
                         "max_docs": 400},
                        {"kind": "package-readmes"},
                    ],
                    "negatives": _TINY_WEB,
                },
                {
                    "name": "pydoc-stdlib",
                    "positives": [
                        {"kind": "pydoc-topics"},
                        {"kind": "stdlib-docstrings", "modules": _TINY_STDLIB_MODULES, "max_docs": 400},
                    ],
                    "negatives": _TINY_WEB,
                },
                {
                    "name": "web-prose",
                    "model": "text-features",
                    "positives": [{"kind": "html-jsonl", "path": _GOLD_PAGES, "part": "main"}],
                    "negatives": [
                        {"kind": "html-jsonl", "path": _GOLD_PAGES, "part": "boilerplate"},
                        {"kind": "warc", "path": "web/*.warc.gz"},
                    ],
                },
            ],
        }
    )  # fmt: skip


def load_train_config(config: str | Path) -> tuple[TrainQualityConfig, Path | None]:
    """A YAML config path, or the name of a built-in config (`tiny`)."""
    if str(config) in BUILTIN_CONFIGS and not Path(config).exists():
        return tiny_config(), None
    path = Path(config)
    return load_yaml_model(path, TrainQualityConfig), path


def resolve_data_root(cfg: TrainQualityConfig, config_path: Path | None, override: Path | None = None) -> Path:
    if override is not None:
        root = Path(override)
    elif cfg.data_root is not None:
        root = Path(cfg.data_root)
        if not root.is_absolute() and config_path is not None:
            root = config_path.parent / root
    else:
        root = default_data_root()
    if not root.is_dir():
        raise Nano2Error(f"data root {root} does not exist (set data_root, --data-root or $NANO2_SHARED_DATA)")
    return root


# --- data ------------------------------------------------------------------------------------------------------


@dataclass
class TrainingSet:
    """Balanced, deduplicated, split examples of one classifier: (1 = high quality, raw text)."""

    train: list[tuple[int, str]]
    holdout: list[tuple[int, str]]
    sources: dict[str, list[SourceTexts]]
    dropped_in_both_classes: int
    dropped_in_validation: int
    available: dict[str, int]

    def summary(self) -> dict[str, Any]:
        def counts(items: list[tuple[int, str]]) -> dict[str, int]:
            hq = sum(label for label, _ in items)
            return {"hq": hq, "cc": len(items) - hq}

        return {
            "positives": [s.summary() for s in self.sources["positives"]],
            "negatives": [s.summary() for s in self.sources["negatives"]],
            "available_after_dedup": self.available,
            "dropped_in_both_classes": self.dropped_in_both_classes,
            "dropped_in_validation_set": self.dropped_in_validation,
            "train": counts(self.train),
            "holdout": counts(self.holdout),
        }


SourceCache = dict[str, SourceTexts]


def _read_sources(
    sources: list[Any], data_root: Path, cfg: TrainQualityConfig, cache: SourceCache, progress: Callable[[str], None]
) -> list[SourceTexts]:
    out = []
    for source in sources:
        key = source.model_dump_json()
        progress(f"read {source.describe()}")
        if key not in cache:
            cache[key] = read_source(source, data_root, seed=cfg.seed, min_chars=cfg.min_chars)
        out.append(cache[key])
    return out


def _dedup_class(texts: list[str], exclude: set[str]) -> tuple[list[str], set[str], int]:
    kept, keys, excluded = [], set(), 0
    for text in texts:
        key = normalize_text(text)
        if key in keys:
            continue
        if key in exclude:
            excluded += 1
            continue
        keys.add(key)
        kept.append(text)
    return kept, keys, excluded


def build_training_set(
    clf: ClassifierTrainingConfig,
    cfg: TrainQualityConfig,
    data_root: Path,
    *,
    validation_keys: set[str] | None = None,
    cache: SourceCache | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> TrainingSet:
    """Read both classes, dedup across them and against validation texts, balance, split: all seeded."""
    cache = {} if cache is None else cache
    validation_keys = validation_keys or set()
    positives_read = _read_sources(clf.positives, data_root, cfg, cache, progress)
    negatives_read = _read_sources(clf.negatives, data_root, cfg, cache, progress)
    positives, pos_keys, pos_excluded = _dedup_class([t for s in positives_read for t in s.texts], validation_keys)
    negatives, neg_keys, neg_excluded = _dedup_class([t for s in negatives_read for t in s.texts], validation_keys)
    both = pos_keys & neg_keys
    if both:
        positives = [t for t in positives if normalize_text(t) not in both]
        negatives = [t for t in negatives if normalize_text(t) not in both]
    available = {"hq": len(positives), "cc": len(negatives)}
    per_class = min(len(positives), len(negatives), cfg.max_docs_per_class or sys.maxsize)
    if per_class < 2:
        raise Nano2Error(
            f"classifier {clf.name}: {len(positives)} positive and {len(negatives)} negative texts after filtering; "
            "need at least 2 of each (lower min_chars or add sources)"
        )
    rng = random.Random(f"{cfg.seed}\0{clf.name}")
    train: list[tuple[int, str]] = []
    holdout: list[tuple[int, str]] = []
    n_holdout = min(per_class - 1, max(1, round(per_class * cfg.holdout_fraction)))  # both splits non-empty
    for label, texts in ((1, positives), (0, negatives)):
        chosen = rng.sample(texts, per_class)  # a seeded random subset, in random order
        holdout.extend((label, t) for t in chosen[:n_holdout])
        train.extend((label, t) for t in chosen[n_holdout:])
    rng.shuffle(train)
    return TrainingSet(
        train=train,
        holdout=holdout,
        sources={"positives": positives_read, "negatives": negatives_read},
        dropped_in_both_classes=len(both),
        dropped_in_validation=pos_excluded + neg_excluded,
        available=available,
    )


def write_fasttext_file(
    path: Path, items: list[tuple[int, str]], normalization: Normalization = TRAINING_NORMALIZATION
) -> str:
    """One `__label__hq|cc normalised text` line per example; returns the file's sha256."""
    digest = hashlib.sha256()
    with open(path, "w", encoding="utf-8") as fh:
        for label, text in items:
            line = f"{HIGH_QUALITY_LABEL if label else LOW_QUALITY_LABEL} {normalize_text(text, normalization)}\n"
            fh.write(line)
            digest.update(line.encode())
    return digest.hexdigest()


def read_validation_labels(path: Path) -> tuple[list[str], list[int]]:
    """Human keep/drop labels: JSONL rows with `text` and `label` (1 keep, 0 drop)."""
    if not path.is_file():
        raise Nano2Error(f"validation labels not found: {path}")
    texts, labels = [], []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                texts.append(str(row["text"]))
                labels.append(int(row["label"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise Nano2Error(f"{path}: line {line_no}: expected JSON with text and label (0/1)") from None
    return texts, labels


# --- training --------------------------------------------------------------------------------------------------


def run_fasttext_training(train_file: Path, model_path: Path, args: dict[str, Any]) -> None:
    """fastText supervised training in a fresh Python process (see fasttext_worker.py for why)."""
    with tempfile.TemporaryDirectory(prefix="nano2-ft-") as tmp:
        params = Path(tmp) / "params.json"
        params.write_text(json.dumps({"input": str(train_file), "output": str(model_path), "args": args}))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(_REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        result = subprocess.run(
            [sys.executable, "-m", "curation.quality.fasttext_worker", str(params)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if result.returncode != 0 or not model_path.is_file():
        lines = [ln for ln in (result.stderr or "").splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise Nano2Error(f"fastText training failed for {model_path.parent.name}: {reason}")


@dataclass
class ClassifierReport:
    name: str
    directory: Path
    train_docs: dict[str, int]
    holdout: dict[str, Any]
    dclm: dict[str, Any] | None
    manifest_id: str


@dataclass
class TrainingReport:
    output_dir: Path
    classifiers: list[ClassifierReport]
    ensemble_dclm: dict[str, Any] | None
    data_root: Path
    manifest_id: str = ""


def _file_inputs(training_set: TrainingSet) -> list[Path]:
    files: list[Path] = []
    for group in training_set.sources.values():
        for source in group:
            files.extend(f for f in source.files if f not in files)
    return files


def train_classifier(
    clf: ClassifierTrainingConfig,
    cfg: TrainQualityConfig,
    output_dir: Path,
    data_root: Path,
    *,
    validation: tuple[Path, list[str], list[int]] | None = None,
    cache: SourceCache | None = None,
    config_path: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> ClassifierReport:
    """Train one classifier into `output_dir` (model.bin + manifest.json) and measure it."""
    validation_keys = {normalize_text(t) for t in validation[1]} if validation else set()
    training_set = build_training_set(
        clf, cfg, data_root, validation_keys=validation_keys, cache=cache, progress=progress
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    progress(f"train {clf.name}")
    args: dict[str, Any] | None = None
    if clf.model == "text-features":
        model_path = output_dir / TEXT_MODEL_FILENAME
        train_text_feature_model([t for _, t in training_set.train], [label for label, _ in training_set.train]).save(
            model_path
        )
        train_sha = hashlib.sha256(json.dumps(training_set.train).encode("utf-8")).hexdigest()
    else:
        args = (clf.fasttext or cfg.fasttext).to_fasttext_args(cfg.seed)
        model_path = output_dir / MODEL_FILENAME
        with tempfile.TemporaryDirectory(prefix="nano2-quality-") as tmp:
            train_file = Path(tmp) / "train.txt"
            train_sha = write_fasttext_file(train_file, training_set.train, cfg.normalization)
            run_fasttext_training(train_file, model_path, args)

    progress(f"evaluate {clf.name}")
    scorer = QualityScorer([ClassifierSpec(name=clf.name, path=str(model_path), normalization=cfg.normalization)])
    holdout_scores = [s[clf.name] for s in scorer.score_many(t for _, t in training_set.holdout)]
    holdout = binary_metrics([label for label, _ in training_set.holdout], holdout_scores)
    dclm = None
    if validation is not None:
        path, texts, labels = validation
        dclm = agreement_at_base_rate(labels, [s[clf.name] for s in scorer.score_many(texts)]) | {"path": str(path)}

    summary = training_set.summary()
    data_inputs = _file_inputs(training_set) + ([validation[0]] if validation else [])
    total = len(training_set.train) + len(training_set.holdout)
    manifest = write_manifest(
        output_dir,
        kind=CLASSIFIER_KIND,
        name=clf.name,
        command=current_command(),
        config={"run": cfg.model_dump(mode="json", exclude={"classifiers"}), "classifier": clf.model_dump(mode="json")},
        config_path=config_path,
        inputs=[input_ref(p) for p in data_inputs],
        stats={
            "documents": total,
            "by": {
                "split": {
                    "train": {"documents": len(training_set.train)},
                    "holdout": {"documents": len(training_set.holdout)},
                },
                "label": {
                    "hq": {"documents": summary["train"]["hq"] + summary["holdout"]["hq"]},
                    "cc": {"documents": summary["train"]["cc"] + summary["holdout"]["cc"]},
                },
            },
        },
        extra={
            "labels": {"positive": HIGH_QUALITY_LABEL, "negative": LOW_QUALITY_LABEL},
            "normalization": cfg.normalization,
            "model": clf.model,
            "fasttext_args": args,
            "seed": cfg.seed,
            "training_data": summary | {"train_file_sha256": train_sha},
            "holdout_metrics": holdout,
            "dclm_human_agreement": dclm,
        },
    )
    return ClassifierReport(
        name=clf.name,
        directory=output_dir,
        train_docs=summary["train"],
        holdout=holdout,
        dclm=dclm,
        manifest_id=manifest.id,
    )


def count_tokens(texts: list[str]) -> tuple[list[int], str]:
    """Token counts with the project's default tokenizer (whitespace words if it is not installed)."""
    from curation.tokens import resolve_tokenizer

    try:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(resolve_tokenizer("default"))
    except (ImportError, Nano2Error, OSError):
        return [len(t.split()) for t in texts], "whitespace"
    return [len(enc.ids) for enc in tokenizer.encode_batch(texts)], "default"


def ensemble_agreement(
    reports: list[ClassifierReport], texts: list[str], labels: list[int], path: Path
) -> dict[str, Any]:
    """The ensemble as the pipeline applies it, on the human-labelled texts: buckets fit on those texts' own
    token-weighted scores (a rank transform, labels unused), ensemble = max, then agreement with the labels."""
    scorer = QualityScorer([ClassifierSpec(name=r.name, path=str(r.directory)) for r in reports])
    scores = scorer.score_many(texts)
    tokens, tokenizer = count_tokens(texts)
    thresholds = QualityThresholds.fit({r.name: [s[r.name] for s in scores] for r in reports}, tokens)
    assignments = [thresholds.assign(s) for s in scores]
    buckets = np.array([a.bucket for a in assignments])
    y = np.array(labels)
    by_level = {}
    for level in thresholds.levels.names:
        in_level = np.array([a.level == level for a in assignments])
        by_level[level] = {
            "documents": int(in_level.sum()),
            "human_keep_rate": float(y[in_level].mean()) if in_level.any() else None,
        }
    return {
        "path": str(path),
        "documents": len(texts),
        "token_counter": tokenizer,
        "bucket_auc": roc_auc(y, buckets),
        "max_score_auc": roc_auc(y, [max(s.values()) for s in scores]),
        "at_base_rate": agreement_at_base_rate(y, buckets),
        "by_level": by_level,
    }


def train_quality(
    cfg: TrainQualityConfig,
    output_dir: str | Path,
    *,
    config_path: Path | None = None,
    data_root: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> TrainingReport:
    """Train every classifier of the config into OUTPUT/<name>/ and write OUTPUT/manifest.json for the set."""
    output_dir = Path(output_dir)
    root = resolve_data_root(cfg, config_path, data_root)
    validation = None
    if cfg.validation.dclm_labels is not None:
        labels_path = Path(cfg.validation.dclm_labels)
        labels_path = labels_path if labels_path.is_absolute() else root / labels_path
        texts, labels = read_validation_labels(labels_path)
        validation = (labels_path, texts, labels)
    cache: SourceCache = {}
    reports = [
        train_classifier(
            clf,
            cfg,
            output_dir / clf.name,
            root,
            validation=validation,
            cache=cache,
            config_path=config_path,
            progress=progress,
        )
        for clf in cfg.classifiers
    ]
    ensemble = None
    if validation is not None:
        progress("ensemble agreement")
        ensemble = ensemble_agreement(reports, validation[1], validation[2], validation[0])
    inputs: list[InputRef] = [input_ref(r.directory) for r in reports]
    manifest = write_manifest(
        output_dir,
        kind=CLASSIFIER_SET_KIND,
        name=cfg.name,
        command=current_command(),
        config=cfg,
        config_path=config_path,
        inputs=inputs,
        stats={"documents": sum(sum(r.train_docs.values()) for r in reports)},
        extra={
            "classifiers": {
                r.name: {
                    "path": r.name,
                    "manifest_id": r.manifest_id,
                    "holdout_metrics": r.holdout,
                    "dclm_human_agreement": r.dclm,
                }
                for r in reports
            },
            "ensemble_dclm_human_agreement": ensemble,
        },
    )
    return TrainingReport(output_dir, reports, ensemble, root, manifest_id=manifest.id)


def progress_steps(cfg: TrainQualityConfig) -> int:
    """How many times `train_quality` calls `progress` (for a progress bar's total)."""
    steps = sum(len(c.positives) + len(c.negatives) + 2 for c in cfg.classifiers)
    return steps + (1 if cfg.validation.dclm_labels is not None else 0)
