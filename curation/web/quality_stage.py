"""The quality part of the web pipeline, from its config: which `curation.quality.steps` each stage runs.

Scores (English only) go into the dedup+score stage, the thresholds fit is a one-task stage of its own (after
every score exists), and buckets/levels are applied in the final stage from the thresholds file. A run without
classifiers skips the fit and writes its English documents at the level `unscored`. Missing classifiers are
trained first from `quality.train_config`.
"""

from __future__ import annotations

from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from curation.quality.steps import FitThresholds, QualityBuckets, QualityScores, SkipThresholds
from curation.web.config import WebConfig
from nano2.errors import Nano2Error


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


def quality_score_steps(cfg: WebConfig) -> list[PipelineStep]:
    if not cfg.quality.classifiers:
        return []
    ensure_classifiers(cfg)
    return [QualityScores([{"name": c.name, "path": c.path} for c in cfg.quality.classifiers])]


def thresholds_step(cfg: WebConfig, scored_folder: Path, thresholds_file: Path) -> PipelineStep:
    if not cfg.quality.classifiers:
        return SkipThresholds()
    names = [c.name for c in cfg.quality.classifiers]
    return FitThresholds(scored_folder, thresholds_file, names, cfg.quality.n_bins,
                         cfg.quality.threshold_sample_docs, cfg.quality.levels)  # fmt: skip


def quality_bucket_step(cfg: WebConfig, thresholds_file: Path) -> PipelineStep:
    return QualityBuckets(str(thresholds_file) if cfg.quality.classifiers else None)
