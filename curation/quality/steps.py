"""datatrove steps of quality classification: thin wrappers, the logic lives in scorer.py and thresholds.py.

A web run is three passes over the same documents (Nemotron-CC step 3):

1. `QualityScores` writes each document's `quality` metadata (one {classifier, score, bucket} entry per classifier
   of the ensemble, bucket still empty) and needs `token_count` counted too (datatrove's TokensCounter). Only
   documents in a scored language (English) are scored: no reliable multilingual classifier exists (paper-facts
   §4), so the rest pass through unscored.
2. The thresholds stage (one task, after every score exists) fits corpus-wide token-weighted thresholds over every
   score shard, or reuses saved ones (`curation.web.quality_stage.CorpusThresholds`), and saves them to a file.
3. `QualityBuckets` fills in each entry's bucket, the ensemble `bucket` (max) and the `level`. It reads the
   thresholds file lazily in each worker, so the chain also works under Slurm or Ray, where the driver does not
   run between stages. Thresholds that could not be fitted (`UnfittedThresholds`) level documents `unscored`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.quality.levels import UNSCORED
from curation.quality.scorer import ClassifierSpec, QualityScorer
from curation.quality.thresholds import QualityThresholds, entry_scores, load_thresholds_artifact
from nano2.contracts.documents import Meta, quality_entries
from nano2.errors import Nano2Error

SCORED_LANGUAGES = ("en",)


def _scored(doc: Document, languages: frozenset[str]) -> bool:
    return doc.metadata.get(Meta.LANGUAGE, "en") in languages


class QualityScores(PipelineStep):
    """Score every document of a scored language with every classifier of the ensemble.

    Model paths are checked when the step is built (in the driver, before any worker starts); each worker loads
    the models once, on its first document.
    """

    name = "🏅 Quality scores"
    type = "📊 - QUALITY"
    _requires_dependencies: ClassVar[list] = [("fasttext", "fasttext-numpy2-wheel")]

    def __init__(
        self,
        classifiers: QualityScorer | Sequence[ClassifierSpec | Mapping[str, Any]],
        languages: Iterable[str] = SCORED_LANGUAGES,
    ):
        super().__init__()
        self.scorer = classifiers if isinstance(classifiers, QualityScorer) else QualityScorer(classifiers)
        self.languages = frozenset(languages)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            if _scored(doc, self.languages):
                with self.track_time():
                    doc.metadata[Meta.QUALITY] = quality_entries(self.scorer.score(doc.text))
                self.stat_update("scored")
            else:
                self.stat_update("not_scored")
            yield doc


class QualityBuckets(PipelineStep):
    """Apply fitted thresholds to documents of a scored language: per-classifier buckets, the ensemble bucket
    (their max) and its level. Without thresholds (a run without classifiers) those documents get the level
    `unscored`, as do thresholds that could not be fitted (counted as `unscored_unfitted`). Counts documents per
    level and ensemble bucket (`level_<name>`, `bucket_<nn>`)."""

    name = "🪣 Quality buckets"
    type = "📊 - QUALITY"

    def __init__(self, thresholds: QualityThresholds | str | Path | None, languages: Iterable[str] = SCORED_LANGUAGES):
        super().__init__()
        self.thresholds_file = None if thresholds is None or isinstance(thresholds, QualityThresholds) else thresholds
        self._thresholds = thresholds if isinstance(thresholds, QualityThresholds) else None
        self.languages = frozenset(languages)
        self.unfitted = False

    @property
    def thresholds(self) -> QualityThresholds | None:
        if self._thresholds is None and self.thresholds_file is not None:
            loaded = load_thresholds_artifact(self.thresholds_file)
            self._thresholds = loaded if isinstance(loaded, QualityThresholds) else None
            self.thresholds_file = None if self._thresholds is None else self.thresholds_file
            self.unfitted = self._thresholds is None
        return self._thresholds

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        thresholds = self.thresholds
        for doc in data:
            if not _scored(doc, self.languages):
                yield doc
                continue
            if thresholds is None:
                doc.metadata[Meta.LEVEL] = UNSCORED
                self.stat_update(f"level_{UNSCORED}", *(["unscored_unfitted"] if self.unfitted else []))
                yield doc
                continue
            entries = doc.metadata.get(Meta.QUALITY)
            if not isinstance(entries, list):
                raise Nano2Error(f"document {doc.id}: no metadata[{Meta.QUALITY.value!r}]; run QualityScores first")
            scores = entry_scores(entries)
            with self.track_time():
                assignment = thresholds.assign(scores)
            doc.metadata[Meta.QUALITY] = quality_entries(scores, assignment.buckets)
            doc.metadata[Meta.BUCKET] = assignment.bucket
            doc.metadata[Meta.LEVEL] = assignment.level
            self.stat_update(f"level_{assignment.level}", f"bucket_{assignment.bucket:02d}")
            yield doc


class SkipThresholds(PipelineStep):
    """The thresholds stage of a run without classifiers: nothing to fit."""

    name = "📏 Quality thresholds (no classifiers)"
    type = "📊 - QUALITY"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self.stat_update("skipped")
        if data:
            yield from data
