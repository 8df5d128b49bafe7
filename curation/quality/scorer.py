"""Score text with an ensemble of quality classifiers (fastText, or `text_features` over document statistics); no
datatrove here, so it tests on its own.

`QualityScorer(classifiers).score(text)` returns {classifier name: P(high-quality label)} for any text (an empty
text gets the model's prior, not an error). Models load lazily, once per process: the scorer pickles without them,
so a datatrove step can ship it to workers that each load their own copy on first use.

The text a model sees must be prepared the way its training text was. Our classifiers (`nano2 curate
train-quality`) are trained on `lower-nopunct` text and say so in their manifest; foreign fastText models such as
DCLM's `fasttext-oh-eli5` were trained on raw text and are scored the way DCLM scores them (`newlines`: lines
joined with spaces). `normalization: auto` picks from the model's manifest, else `newlines`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from curation.quality.text_features import TEXT_MODEL_FILENAME, TextFeatureModel
from nano2.errors import Nano2Error

Normalization = Literal["lower-nopunct", "newlines"]
MODEL_FILENAME = "model.bin"
HIGH_QUALITY_LABEL = "__label__hq"
LOW_QUALITY_LABEL = "__label__cc"
CLASSIFIER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_NOT_WORD_OR_SPACE = re.compile(r"[^\w\s]+")
_FASTTEXT_PROB_FLOOR = 1e-5  # fastText reports exp(log(p + 1e-5)); we take it back off


def normalize_text(text: str, mode: Normalization = "lower-nopunct") -> str:
    """One line of text for fastText (which treats a newline as the end of an example).

    `lower-nopunct` (DCLM-style training normalisation): lowercase, every run of characters that are neither word
    characters nor whitespace becomes a space (punctuation and symbols), whitespace collapsed to single spaces.
    `newlines`: DCLM's inference-time preparation, lines joined with single spaces and nothing else changed.
    """
    if mode == "newlines":
        return " ".join(text.strip().splitlines())
    if mode == "lower-nopunct":
        return " ".join(_NOT_WORD_OR_SPACE.sub(" ", text.lower()).split())
    raise ValueError(f"unknown normalization {mode!r}; expected lower-nopunct or newlines")


def resolve_model_path(path: str | Path) -> Path:
    """A model file, or a directory holding `model.bin` (fastText) or `model.json` (text features), as train-quality
    writes them; missing -> Nano2Error."""
    path = Path(path).expanduser()
    candidate = path
    if path.is_dir():
        candidate = path / MODEL_FILENAME
        if not candidate.is_file() and (path / TEXT_MODEL_FILENAME).is_file():
            candidate = path / TEXT_MODEL_FILENAME
    if not candidate.is_file():
        where = f"{path} (no {MODEL_FILENAME} or {TEXT_MODEL_FILENAME} inside)" if path.is_dir() else str(path)
        raise Nano2Error(f"quality classifier model not found: {where}")
    return candidate


def normalization_from_manifest(model_path: Path) -> Normalization | None:
    """The normalisation recorded by train-quality in the manifest beside the model, if any."""
    manifest = model_path.parent / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    value = (data.get("extra") or {}).get("normalization")
    return value if value in ("lower-nopunct", "newlines") else None


class ClassifierSpec(BaseModel):
    """One member of the ensemble: its name (a metadata key), model path, positive label and text preparation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="the classifier of its metadata quality entries; letters, digits, '_', '-', '.'")
    path: str = Field(description="fastText .bin file, or a train-quality output directory holding model.bin")
    label: str = Field(default=HIGH_QUALITY_LABEL, description="the high-quality label whose probability is the score")
    normalization: Literal["auto", "lower-nopunct", "newlines"] = "auto"

    @field_validator("name")
    @classmethod
    def _usable_as_column(cls, name: str) -> str:
        if not CLASSIFIER_NAME.match(name):
            raise ValueError(f"classifier name {name!r}: use letters, digits, '_', '-' or '.'")
        return name


class _LoadedClassifier:
    __slots__ = ("label", "model", "name", "normalization")

    def __init__(self, name: str, model: Any, label: str, normalization: Normalization):
        self.name, self.model, self.label, self.normalization = name, model, label, normalization


def load_fasttext_model(path: Path) -> Any:
    """Load a fastText model quietly (fasttext.load_model prints a deprecation warning to stderr)."""
    try:
        from fasttext.FastText import _FastText
    except ImportError:
        raise Nano2Error("quality scoring needs the fasttext package (fasttext-numpy2-wheel)") from None
    try:
        return _FastText(model_path=str(path))
    except ValueError as exc:
        raise Nano2Error(f"{path}: not a fastText model ({exc})") from None


class QualityScorer:
    """Scores text with every classifier of an ensemble; lazy, per-process model loading; picklable."""

    def __init__(self, classifiers: Sequence[ClassifierSpec | Mapping[str, Any]], *, check_paths: bool = True):
        self.classifiers = [
            c if isinstance(c, ClassifierSpec) else ClassifierSpec.model_validate(c) for c in classifiers
        ]
        if not self.classifiers:
            raise Nano2Error("quality scorer: no classifiers given")
        names = [c.name for c in self.classifiers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise Nano2Error(f"quality scorer: duplicate classifier names: {', '.join(duplicates)}")
        if check_paths:
            for spec in self.classifiers:
                resolve_model_path(spec.path)
        self._loaded: list[_LoadedClassifier] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"classifiers": self.classifiers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.classifiers = state["classifiers"]
        self._loaded = None
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classifiers]

    def _load(self) -> list[_LoadedClassifier]:
        with self._lock:
            if self._loaded is None:
                loaded = []
                for spec in self.classifiers:
                    path = resolve_model_path(spec.path)
                    if path.suffix == ".json":
                        loaded.append(_LoadedClassifier(spec.name, TextFeatureModel.load(path), spec.label, "newlines"))
                        continue
                    model = load_fasttext_model(path)
                    labels = list(model.get_labels())
                    if spec.label not in labels:
                        raise Nano2Error(
                            f"{path}: classifier {spec.name!r} has labels {labels}, not {spec.label!r} (set `label`)"
                        )
                    normalization = spec.normalization
                    if normalization == "auto":
                        normalization = normalization_from_manifest(path) or "newlines"
                    loaded.append(_LoadedClassifier(spec.name, model, spec.label, normalization))
                self._loaded = loaded
        return self._loaded

    def score(self, text: str) -> dict[str, float]:
        """{classifier name: probability of its high-quality label}, each in [0, 1]."""
        scores = {}
        prepared: dict[str, str] = {}
        for clf in self._load():
            if isinstance(clf.model, TextFeatureModel):
                scores[clf.name] = clf.model.score(text or "")
                continue
            line = prepared.get(clf.normalization)
            if line is None:
                line = prepared[clf.normalization] = normalize_text(text or "", clf.normalization)
            labels, probs = clf.model.predict(line, k=-1, threshold=0.0)
            prob = dict(zip(labels, probs, strict=True)).get(clf.label, 0.0)
            scores[clf.name] = min(1.0, max(0.0, float(prob) - _FASTTEXT_PROB_FLOOR))
        return scores

    def score_many(self, texts: Iterable[str]) -> list[dict[str, float]]:
        return [self.score(t) for t in texts]
