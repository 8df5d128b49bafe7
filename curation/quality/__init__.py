"""Quality classification for the Nemotron-CC web pipeline: fastText ensemble, 20 token-weighted buckets, 5 levels.

Modules (scoring logic separate from datatrove steps, NeMo-Curator style):

* `scorer`     - `QualityScorer(classifiers).score(text) -> {name: P(hq)}`, `ClassifierSpec`, text normalisation
* `thresholds` - `compute_thresholds`, `assign_bucket`, `QualityThresholds` (fit / assign / JSON / manifest extra)
* `levels`     - `QualityLevels`, the configurable bucket->level mapping (`DEFAULT_LEVELS`)
* `steps`      - datatrove steps `QualityScores`, `QualityBuckets` (the web pipeline's)
* `training`   - `nano2 curate train-quality`: DCLM-recipe fastText training with held-out and human-label metrics
* `sources`    - offline training text (GSM8K train, package READMEs, pydoc topics, stdlib docstrings, web samples)
* `metrics`    - ROC AUC, precision/recall/F1, agreement at the human base rate

Names are imported lazily so `nano2` (which imports `curation.quality.cli` at start) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClassifierSpec": "scorer",
    "QualityScorer": "scorer",
    "normalize_text": "scorer",
    "QualityLevels": "levels",
    "DEFAULT_LEVELS": "levels",
    "QualityThresholds": "thresholds",
    "ClassifierThresholds": "thresholds",
    "compute_thresholds": "thresholds",
    "assign_bucket": "thresholds",
    "assign_buckets": "thresholds",
    "in_threshold_sample": "thresholds",
    "entry_scores": "thresholds",
    "UNSCORED": "levels",
    "QualityScores": "steps",
    "QualityBuckets": "steps",
    "TrainQualityConfig": "training",
    "train_quality": "training",
    "tiny_config": "training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'curation.quality' has no attribute {name!r}")
    return getattr(importlib.import_module(f"curation.quality.{module}"), name)
