"""datatrove steps around the scorer and the thresholds: thin wrappers, the logic lives in scorer.py/thresholds.py.

A web run is two passes over the same documents (Nemotron-CC step 3):

1. `QualityScores(classifiers)` writes `metadata["quality_scores"] = {name: P(hq)}` (needs `token_count` counted
   too, e.g. datatrove's TokensCounter). Write the scored documents.
2. Fit once, in the driver: `QualityThresholds.fit_parquet(files, classifiers, sample_fraction=...)` (or
   `.fit_documents(docs)`), store `thresholds.to_manifest_extra()` in the run manifest.
3. `QualityBuckets(thresholds)` writes `metadata["quality_buckets"]` (per classifier), `metadata["bucket"]`
   (ensemble = max) and `metadata["level"]`; a `ParquetWriter(output_filename="level=${level}/${rank}.parquet")`
   then partitions the output by level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.quality.scorer import ClassifierSpec, QualityScorer
from curation.quality.thresholds import BUCKET_KEY, BUCKETS_KEY, LEVEL_KEY, SCORES_KEY, QualityThresholds
from nano2.errors import Nano2Error


class QualityScores(PipelineStep):
    """Score every document with every classifier of the ensemble into `metadata["quality_scores"]`.

    Model paths are checked when the step is built (in the driver, before any worker starts); each worker loads
    the models once, on its first document.
    """

    name = "🏅 Quality scores"
    type = "📊 - QUALITY"
    _requires_dependencies: ClassVar[list] = [("fasttext", "fasttext-numpy2-wheel")]

    def __init__(self, classifiers: QualityScorer | Sequence[ClassifierSpec | Mapping[str, Any]]):
        super().__init__()
        self.scorer = classifiers if isinstance(classifiers, QualityScorer) else QualityScorer(classifiers)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            self.stat_update("scored")
            with self.track_time():
                doc.metadata[SCORES_KEY] = self.scorer.score(doc.text)
            yield doc


class QualityBuckets(PipelineStep):
    """Apply stored thresholds: per-classifier buckets, the ensemble bucket (max) and its level.

    Counts documents per level and per ensemble bucket in datatrove's stats (`level_<name>`, `bucket_<nn>`).
    """

    name = "🪣 Quality buckets"
    type = "📊 - QUALITY"

    def __init__(self, thresholds: QualityThresholds | str | Path):
        super().__init__()
        self.thresholds = (
            thresholds if isinstance(thresholds, QualityThresholds) else QualityThresholds.load(thresholds)
        )

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            scores = doc.metadata.get(SCORES_KEY)
            if not isinstance(scores, Mapping):
                raise Nano2Error(f"document {doc.id}: no metadata[{SCORES_KEY!r}]; run QualityScores before buckets")
            with self.track_time():
                assignment = self.thresholds.assign(scores)
            doc.metadata[BUCKETS_KEY] = assignment.buckets
            doc.metadata[BUCKET_KEY] = assignment.bucket
            doc.metadata[LEVEL_KEY] = assignment.level
            self.stat_update(f"level_{assignment.level}", f"bucket_{assignment.bucket:02d}")
            yield doc
