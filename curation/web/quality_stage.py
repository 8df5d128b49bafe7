"""The quality part of the web pipeline, from its config: which quality steps each stage runs.

Scores (English only) go into the dedup+score stage, which also writes every scored document's scores to a score
shard per task (`ScoreShards`: id, token count, one column per classifier). The thresholds stage (one task, after
every score exists) computes corpus-wide token-weighted cut points over all score shards with polars
(`curation.quality.thresholds.fit_corpus_thresholds`), or reuses a saved thresholds file (`curate web
--thresholds FILE`, so a new crawl segment is levelled on the first run's scale). Buckets/levels are applied in
the final stage from the thresholds file. A run without classifiers skips the fit and writes its English documents
at the level `unscored`; so does a run whose thresholds cannot be fitted (nothing scored, no tokens), with the
reason saved in the thresholds file and the manifest. Missing classifiers are trained first from
`quality.train_config`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.quality.levels import QualityLevels
from curation.quality.steps import SCORED_LANGUAGES, QualityBuckets, QualityScores, SkipThresholds
from curation.quality.thresholds import (
    SCORE_ID,
    SCORE_LANGUAGE,
    SCORE_RESOLUTION,
    SCORE_TOKENS,
    QualityThresholds,
    entry_scores,
    fit_corpus_thresholds,
    load_thresholds_artifact,
    score_column,
)
from curation.web.config import WebConfig
from nano2.contracts.documents import TOKEN_COUNT, Meta
from nano2.errors import Nano2Error

SCORE_BATCH_ROWS = 50_000


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


class ScoreShards(PipelineStep):
    """Write the scores of every scored document (id, token count, language, one column per classifier) to
    `<folder>/<rank>.parquet`, passing documents through. A task that scored nothing writes an empty shard, so
    the thresholds step can tell "nothing scored" from "scoring never ran"."""

    name = "🧾 Score shards"
    type = "📊 - QUALITY"

    def __init__(self, folder: str | Path, classifiers: list[str], languages: Iterable[str] = SCORED_LANGUAGES):
        super().__init__()
        self.folder, self.classifiers, self.languages = str(folder), list(classifiers), frozenset(languages)

    def _schema(self):
        import pyarrow as pa

        fields = [(SCORE_ID, pa.string()), (SCORE_TOKENS, pa.int64()), (SCORE_LANGUAGE, pa.string())]
        return pa.schema(fields + [(score_column(c), pa.float64()) for c in self.classifiers])

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = self._schema()
        columns: dict[str, list] = {name: [] for name in schema.names}
        path = Path(self.folder) / f"{rank:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        with pq.ParquetWriter(partial, schema) as writer:

            def flush() -> None:
                writer.write_table(pa.table(columns, schema=schema))
                for values in columns.values():
                    values.clear()

            for doc in data or ():
                entries = doc.metadata.get(Meta.QUALITY)
                if doc.metadata.get(Meta.LANGUAGE, "en") in self.languages and isinstance(entries, list):
                    scores = entry_scores(entries)
                    columns[SCORE_ID].append(str(doc.id))
                    count = doc.metadata.get(TOKEN_COUNT)
                    columns[SCORE_TOKENS].append(None if count is None else int(count))
                    columns[SCORE_LANGUAGE].append(doc.metadata.get(Meta.LANGUAGE, "en"))
                    for c in self.classifiers:
                        columns[score_column(c)].append(scores.get(c))
                    self.stat_update("score_rows")
                    if len(columns[SCORE_ID]) >= SCORE_BATCH_ROWS:
                        flush()
                yield doc
            flush()
        partial.replace(path)


class CorpusThresholds(PipelineStep):
    """One task: fit corpus-wide thresholds over every score shard, or copy a saved thresholds file, and save the
    result (fitted thresholds or `UnfittedThresholds` with its reason) to `output_file`."""

    name = "📏 Quality thresholds (corpus-wide)"
    type = "📊 - QUALITY"

    def __init__(
        self,
        scores_folder: str | Path,
        output_file: str | Path,
        classifiers: list[str],
        n_bins: int,
        levels: dict | None = None,
        saved: str | Path | None = None,
        resolution: float = SCORE_RESOLUTION,
    ):
        super().__init__()
        self.scores_folder, self.output_file = str(scores_folder), str(output_file)
        self.classifiers, self.n_bins, self.levels = list(classifiers), n_bins, dict(levels) if levels else None
        self.saved, self.resolution = (str(saved) if saved else None), resolution

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if self.saved is not None:
            load_thresholds_artifact(self.saved).save(self.output_file)  # a thresholds file or a run's manifest
            self.stat_update("reused")
        else:
            levels = QualityLevels(n_buckets=self.n_bins, levels=self.levels) if self.levels else None
            files = sorted(str(p) for p in Path(self.scores_folder).glob("*.parquet"))
            result = fit_corpus_thresholds(
                files, self.classifiers, levels=levels, n_bins=self.n_bins, resolution=self.resolution
            )
            result.save(self.output_file)
            self.stat_update(result.status)
            if result.source is not None:
                self.stat_update("score_rows", value=result.source.documents)
        if data:
            yield from data


def check_saved_thresholds(cfg: WebConfig, saved: Path) -> QualityThresholds:
    """A saved thresholds file a run may level with: fitted, and with a cut list for every classifier it scores."""
    if not cfg.quality.classifiers:
        raise Nano2Error(f"--thresholds {saved}: the config has no quality classifiers, so nothing is scored")
    thresholds = load_thresholds_artifact(saved)
    if not isinstance(thresholds, QualityThresholds):
        raise Nano2Error(f"--thresholds {saved}: these thresholds were never fitted ({thresholds.reason})")
    names = [c.name for c in cfg.quality.classifiers]
    if sorted(names) != sorted(thresholds.names):
        raise Nano2Error(
            f"--thresholds {saved}: fitted for classifiers {', '.join(thresholds.names)}, "
            f"but the config scores with {', '.join(names)}"
        )
    return thresholds


def quality_score_steps(cfg: WebConfig, scores_folder: Path | None = None) -> list[PipelineStep]:
    if not cfg.quality.classifiers:
        return []
    ensure_classifiers(cfg)
    names = [c.name for c in cfg.quality.classifiers]
    steps: list[PipelineStep] = [QualityScores([{"name": c.name, "path": c.path} for c in cfg.quality.classifiers])]
    return [*steps, ScoreShards(scores_folder or cfg.work / "scores", names)]


def thresholds_step(
    cfg: WebConfig, scores_folder: Path, thresholds_file: Path, saved: Path | None = None
) -> PipelineStep:
    if saved is not None:
        check_saved_thresholds(cfg, saved)
    if not cfg.quality.classifiers:
        return SkipThresholds()
    names = [c.name for c in cfg.quality.classifiers]
    return CorpusThresholds(scores_folder, thresholds_file, names, cfg.quality.n_bins, cfg.quality.levels, saved)


def quality_bucket_step(cfg: WebConfig, thresholds_file: Path) -> PipelineStep:
    return QualityBuckets(str(thresholds_file) if cfg.quality.classifiers else None)
