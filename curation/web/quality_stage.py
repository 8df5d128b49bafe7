"""The quality part of the web pipeline: score English documents, fit token-weighted thresholds on them (one
task, after every score exists), then assign buckets and levels. Non-English documents are not scored (no reliable
multilingual classifier, paper-facts §4) and pass through; without classifiers English documents get the level
`unscored`.

Thresholds are a file written by stage 7 and read lazily by stage 8's workers, so the chain also works under Slurm
or Ray where the driver does not run between stages.
"""

from __future__ import annotations

from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.web.config import QualityConfig, WebConfig
from nano2.errors import Nano2Error

UNSCORED = "unscored"


def _is_scored(doc) -> bool:
    return doc.metadata.get("language", "en") == "en"


def _specs(quality: QualityConfig) -> list[dict]:
    return [{"name": c.name, "path": c.path} for c in quality.classifiers]


def ensure_classifiers(cfg: WebConfig) -> None:
    """Train missing classifiers with `quality.train_config` (or fail naming the missing model)."""
    from curation.quality.scorer import resolve_model_path

    missing = []
    for c in cfg.quality.classifiers:
        try:
            resolve_model_path(c.path)
        except Nano2Error:
            missing.append(c)
    if not missing:
        return
    if cfg.quality.train_config is None:
        raise Nano2Error(f"quality classifier {missing[0].name!r}: no model at {missing[0].path} (and no train_config)")
    from curation.quality.training import load_train_config, train_quality

    train_cfg, train_path = load_train_config(cfg.quality.train_config)
    out_dirs = {str(Path(c.path).parent) for c in missing}
    if len(out_dirs) != 1:
        raise Nano2Error("quality: classifiers trained from train_config must share one parent directory")
    train_quality(train_cfg, out_dirs.pop(), config_path=train_path)
    for c in missing:
        resolve_model_path(c.path)  # the trained set must contain every classifier the pipeline names


class ScoreEnglish(PipelineStep):
    """Per-classifier quality scores for English documents (`metadata["quality_scores"]`)."""

    name = "🏅 Quality scores (English)"
    type = "📊 - QUALITY"

    def __init__(self, classifiers: list[dict]):
        from curation.quality.scorer import QualityScorer

        super().__init__()
        self.scorer = QualityScorer(classifiers)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from curation.quality.thresholds import SCORES_KEY

        for doc in data:
            if _is_scored(doc):
                with self.track_time():
                    doc.metadata[SCORES_KEY] = self.scorer.score(doc.text)
                self.stat_update("scored")
            else:
                self.stat_update("not_scored")
            yield doc


class FitThresholds(PipelineStep):
    """One task: read every English document's scores and token count, fit the thresholds, save them."""

    name = "📏 Quality thresholds"
    type = "📊 - QUALITY"

    def __init__(
        self,
        scored_folder: str,
        output_file: str,
        classifiers: list[str],
        n_bins: int,
        sample_docs: int,
        levels: dict | None = None,
    ):
        super().__init__()
        self.levels = levels
        self.scored_folder, self.output_file = scored_folder, output_file
        self.classifiers, self.n_bins, self.sample_docs = classifiers, n_bins, sample_docs

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import duckdb

        from curation.quality.thresholds import QualityThresholds

        files = sorted(str(p) for p in Path(self.scored_folder).rglob("*.jsonl.gz"))
        if not files:
            raise Nano2Error(f"{self.scored_folder}: no scored documents to fit quality thresholds on")
        cols = ", ".join(
            f"CAST(json_extract(metadata, '$.quality_scores.\"{n}\"') AS DOUBLE)" for n in self.classifiers
        )
        rows = duckdb.sql(
            f"SELECT CAST(json_extract(metadata, '$.token_count') AS BIGINT), {cols} "
            f"FROM read_json({files}, format='newline_delimited', columns={{'id': 'VARCHAR', 'metadata': 'JSON'}}) "
            f"WHERE json_extract_string(metadata, '$.language') = 'en' ORDER BY hash(id) LIMIT {int(self.sample_docs)}"
        ).fetchall()
        if not rows:
            raise Nano2Error("no English documents survived the filters: quality thresholds cannot be fitted")
        tokens = [max(int(r[0] or 0), 0) for r in rows]
        scores = {name: [float(r[i + 1]) for r in rows] for i, name in enumerate(self.classifiers)}
        from curation.quality.levels import QualityLevels

        levels = QualityLevels(n_buckets=self.n_bins, levels=self.levels) if self.levels else None
        thresholds = QualityThresholds.fit(scores, tokens, n_bins=self.n_bins, levels=levels)
        thresholds.save(self.output_file)
        self.stat_update("sample_documents", value=len(rows))
        if data:
            yield from data


class BucketEnglish(PipelineStep):
    """Apply the saved thresholds: per-classifier buckets, ensemble bucket (max) and level, for English docs."""

    name = "🪣 Quality buckets (English)"
    type = "📊 - QUALITY"

    def __init__(self, thresholds_file: str | None):
        super().__init__()
        self.thresholds_file = thresholds_file
        self._thresholds = None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from curation.quality.thresholds import BUCKET_KEY, BUCKETS_KEY, LEVEL_KEY, SCORES_KEY, QualityThresholds

        if self.thresholds_file is not None and self._thresholds is None:
            self._thresholds = QualityThresholds.load(self.thresholds_file)
        for doc in data:
            if _is_scored(doc) and self._thresholds is not None:
                assignment = self._thresholds.assign(doc.metadata[SCORES_KEY])
                doc.metadata[BUCKETS_KEY] = assignment.buckets
                doc.metadata[BUCKET_KEY] = assignment.bucket
                doc.metadata[LEVEL_KEY] = assignment.level
                self.stat_update(f"level_{assignment.level}")
            elif _is_scored(doc):
                doc.metadata[LEVEL_KEY] = UNSCORED
                self.stat_update(f"level_{UNSCORED}")
            yield doc


def quality_score_step(cfg: WebConfig) -> list[PipelineStep]:
    if not cfg.quality.classifiers:
        return []
    ensure_classifiers(cfg)
    return [ScoreEnglish(_specs(cfg.quality))]


def thresholds_step(cfg: WebConfig, scored_folder: Path, thresholds_file: Path) -> PipelineStep:
    if not cfg.quality.classifiers:
        return _NoThresholds()
    names = [c.name for c in cfg.quality.classifiers]
    return FitThresholds(str(scored_folder), str(thresholds_file), names, cfg.quality.n_bins,
                         cfg.quality.threshold_sample_docs, cfg.quality.levels)  # fmt: skip


def quality_bucket_step(cfg: WebConfig, thresholds_file: Path) -> list[PipelineStep]:
    return [BucketEnglish(str(thresholds_file) if cfg.quality.classifiers else None)]


class _NoThresholds(PipelineStep):
    name = "📏 Quality thresholds (no classifiers)"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self.stat_update("skipped")
        if data:
            yield from data
