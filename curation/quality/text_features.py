"""A quality classifier over document statistics: a member of the ensemble that sees what fastText cannot.

fastText sees a bag of words and n-grams, so it learns *topics* from the offline positives (math, Python) and
nothing about the shape of a text. Human keep/drop labels (DCLM) follow shape closely: the plain length of a
document alone ranks them at AUC 0.745. This model is a logistic regression over ten shape statistics (length,
words per line, share of lines ending a sentence, stop-word share, capitalised words, digits, symbols, short
lines, repeated lines, word length) trained like any other classifier of a `train-quality` run (positives vs
negatives, seeded split), written as `model.json` beside its manifest and scored by `QualityScorer`.

With the article text our extractor keeps from real pages as positives and the page furniture it drops plus raw
crawl pages as negatives, it learns what separates written prose from web boilerplate, which is what the human
labels reward.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation.logistic import fit_logistic, sigmoid
from nano2.errors import Nano2Error

TEXT_MODEL_FILENAME = "model.json"
TEXT_MODEL_KIND = "text-features-logistic"
# The most frequent English function words (documents in other languages simply score a low share).
STOP_WORDS = frozenset(
    [
        "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be", "by", "this",
        "are", "from", "or", "at", "an", "have", "not", "but", "which", "you", "they", "his", "her", "their", "we",
        "can", "has", "will", "its",
    ]
)  # fmt: skip
FEATURE_NAMES = (
    "log_chars", "mean_word_chars", "sentence_end_line_share", "digit_share", "symbol_share", "stop_word_share",
    "capitalised_word_share", "short_line_share", "repeated_line_share", "log_words_per_line",
)  # fmt: skip
_SENTENCE_END = frozenset(".!?\"'")


def text_features(text: str) -> list[float]:
    """The `FEATURE_NAMES` statistics of one document (an empty text gives zeros, not an error)."""
    words = text.split()
    n_words = max(1, len(words))
    lines = [line for line in text.split("\n") if line.strip()]
    n_lines = max(1, len(lines))
    n_chars = max(1, len(text))
    return [
        math.log1p(len(text)),
        sum(len(w) for w in words) / n_words,
        sum(line.rstrip()[-1:] in _SENTENCE_END for line in lines) / n_lines,
        sum(c.isdigit() for c in text) / n_chars,
        sum(not c.isalnum() and not c.isspace() for c in text) / n_chars,
        sum(w.lower() in STOP_WORDS for w in words) / n_words,
        sum(w[:1].isupper() for w in words) / n_words,
        sum(len(line) < 40 for line in lines) / n_lines,
        1 - len(set(lines)) / n_lines if lines else 0.0,
        math.log1p(len(words) / n_lines),
    ]


@dataclass(frozen=True)
class TextFeatureModel:
    """Standardised logistic regression: P(high quality) = sigmoid(((x - mean) / scale) . weights + bias)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def score(self, text: str) -> float:
        x = (np.asarray(text_features(text or "")) - self.mean) / self.scale
        return float(sigmoid(np.asarray(x @ self.weights + self.bias)))

    def save(self, path: Path) -> None:
        data = {
            "kind": TEXT_MODEL_KIND,
            "feature_names": list(FEATURE_NAMES),
            "mean": self.mean.round(8).tolist(),
            "scale": self.scale.round(8).tolist(),
            "weights": self.weights.round(8).tolist(),
            "bias": round(self.bias, 8),
        }
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TextFeatureModel:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise Nano2Error(f"{path}: not a readable text-features model ({exc})") from None
        if data.get("kind") != TEXT_MODEL_KIND or tuple(data.get("feature_names", ())) != FEATURE_NAMES:
            raise Nano2Error(
                f"{path}: not a {TEXT_MODEL_KIND} model with this code's features {FEATURE_NAMES}; retrain it"
            )
        return cls(
            np.asarray(data["mean"], dtype=np.float64),
            np.asarray(data["scale"], dtype=np.float64),
            np.asarray(data["weights"], dtype=np.float64),
            float(data["bias"]),
        )


def train_text_feature_model(texts: Sequence[str], labels: Sequence[int], l2: float = 1.0) -> TextFeatureModel:
    """Fit on labelled texts (1 high quality, 0 not); both classes are needed."""
    y = np.asarray(labels, dtype=np.float64)
    if len(set(y.tolist())) < 2:
        raise Nano2Error("text-features training needs both high-quality and low-quality texts")
    x = np.array([text_features(t) for t in texts])
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    weights, bias = fit_logistic((x - mean) / scale, y, l2=l2)
    return TextFeatureModel(mean, scale, weights, bias)
