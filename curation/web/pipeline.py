"""The Nemotron-CC web pipeline as a chain of datatrove executors, assembled from a `WebConfig`.

Stages (each its own executor and logging dir, chained with `depends`, so a rerun skips finished tasks):
1. extract: read (WARC / JSONL) -> keys -> URL filter -> main-text extraction (math-aware) -> language ID ->
   heuristic filters -> token counts -> exact-dedup signatures -> JSONL (`work/extracted`).
   Intermediate stages are JSONL (schema-free: documents of different sources carry different metadata);
   the final artifacts are Parquet with one fixed schema.
2. exact-find (1 task): duplicates of the normalised content hash.
3. minhash-sig, 4. minhash-buckets, 5. minhash-cluster: datatrove's MinHash stages over `work/extracted`.
6. dedup+score: read `work/extracted` -> MinHash filter -> exact filter -> quality scores (English) -> `work/scored`.
7. thresholds (1 task): token-weighted 20-bin thresholds per classifier from the English scores.
8. bucket+write: per-classifier buckets, ensemble = max, level; write `web/level=*`, `math/level=*`,
   `multilingual/language=*` under `output_dir`, decisions under `output_dir/decisions`, then manifests.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from curation.decisions import DecisionsWriter
from curation.executors import ExecutorConfig, make_executor
from curation.manifests import write_run_manifest
from curation.tokens import resolve_tokenizer
from curation.web.config import WebConfig
from curation.web.dedup import AssignKeys, ExactDedupFilter, ExactFindDuplicates, ExactHashSignature
from curation.web.readers import JsonlDocuments, WarcDocuments
from curation.web.routing import MATH, MULTILINGUAL, WEB, RouteWriter
from curation.web.steps import HeuristicFilters, LanguageID, OfflineURLFilter
from curation.web.words import RegexWordTokenizer
from nano2.errors import Nano2Error
from nano2.manifest import InputRef, content_hash, write_manifest


@dataclass
class Stage:
    name: str
    pipeline: list
    tasks: int  # 0 = as the executor config says


def _decisions(cfg: WebConfig, step: str) -> DecisionsWriter:
    """Rows go to `<output>/decisions/<step>/`, the `decisions` artifact of the run."""
    return DecisionsWriter(str(cfg.output), step)


def _readers(cfg: WebConfig) -> list:
    readers = []
    for spec in cfg.inputs:
        if spec.kind == "warc":
            readers.append(
                WarcDocuments(spec.path, glob_pattern=spec.glob, limit=spec.limit, decisions=_decisions(cfg, "read"))
            )
        else:
            readers.append(
                JsonlDocuments(
                    spec.path,
                    glob_pattern=spec.glob,
                    text_key=spec.text_key,
                    id_key=spec.id_key,
                    url_key=spec.url_key,
                    is_html=spec.html,
                    limit=spec.limit,
                    decisions=_decisions(cfg, "read"),
                )
            )
    return readers


def _languages(cfg: WebConfig) -> list[str]:
    return (["en"] if cfg.language.english else []) + list(cfg.language.multilingual)


def build_stages(cfg: WebConfig, thresholds_file: Path) -> list[Stage]:
    from datatrove.pipeline.dedup import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import TokensCounter
    from datatrove.pipeline.writers import JsonlWriter

    from curation.web.extract import FastExtractor
    from curation.web.quality_stage import quality_bucket_step, quality_score_step, thresholds_step

    work = cfg.work
    extract_steps = [
        *_readers(cfg),
        AssignKeys(),
    ]
    if cfg.url_filter.enabled:
        uf = cfg.url_filter
        extract_steps.append(
            OfflineURLFilter(
                banned_words_files=uf.banned_words_files,
                soft_banned_words_files=uf.soft_banned_words_files,
                banned_subwords_files=uf.banned_subwords_files,
                soft_word_threshold=uf.soft_word_threshold,
                use_integrated_lists=uf.use_integrated_lists,
                exclusion_writer=_decisions(cfg, "url_filter"),
            )
        )
    extract_steps += [
        FastExtractor(
            math_aware=cfg.extraction.math_aware, favour=cfg.extraction.favour, decisions=_decisions(cfg, "extract")
        ),
        LanguageID(_languages(cfg), cfg.language.min_score, decisions=_decisions(cfg, "language")),
        HeuristicFilters(decisions=_decisions(cfg, "heuristics")),
        TokensCounter(resolve_tokenizer(cfg.tokenizer)),
    ]
    if cfg.dedup.exact:
        extract_steps.append(ExactHashSignature(str(work / "exact" / "signatures")))
    extract_steps.append(JsonlWriter(str(work / "extracted"), output_filename="${rank}.jsonl.gz"))
    stages = [Stage("extract", extract_steps, 0)]

    if cfg.dedup.exact:
        stages.append(
            Stage("exact-find", [ExactFindDuplicates(str(work / "exact" / "signatures"), str(work / "exact"))], 1)
        )
    mh = cfg.dedup.minhash
    mh_config = MinhashConfig(n_grams=mh.n_grams, num_buckets=mh.num_buckets, hashes_per_bucket=mh.hashes_per_bucket)
    mh_config.seed = mh.seed
    mh_dir = work / "minhash"
    if mh.enabled:
        stages += [
            Stage(
                "minhash-signatures",
                [
                    JsonlReader(str(work / "extracted")),
                    MinhashDedupSignature(str(mh_dir / "signatures"), config=mh_config, language=RegexWordTokenizer()),
                ],
                0,
            ),
            Stage(
                "minhash-buckets",
                [MinhashDedupBuckets(str(mh_dir / "signatures"), str(mh_dir / "buckets"), config=mh_config)],
                mh.num_buckets,
            ),
            Stage(
                "minhash-cluster",
                [MinhashDedupCluster(str(mh_dir / "buckets"), str(mh_dir / "remove"), config=mh_config)],
                1,
            ),
        ]
    score_steps: list = [JsonlReader(str(work / "extracted"))]
    if mh.enabled:
        score_steps.append(MinhashDedupFilter(str(mh_dir / "remove"), exclusion_writer=_minhash_decisions(cfg)))
    if cfg.dedup.exact:
        score_steps.append(ExactDedupFilter(str(work / "exact"), decisions=_decisions(cfg, "exact_dedup")))
    score_steps += [*quality_score_step(cfg), JsonlWriter(str(work / "scored"), output_filename="${rank}.jsonl.gz")]
    stages += [
        Stage("dedup-score", score_steps, 0),
        Stage("thresholds", [thresholds_step(cfg, work / "scored", thresholds_file)], 1),
        Stage(
            "bucket-write",
            [
                JsonlReader(str(work / "scored")),
                *quality_bucket_step(cfg, thresholds_file),
                RouteWriter(str(cfg.output), [c.name for c in cfg.quality.classifiers]),
            ],
            0,
        ),
    ]
    return stages


def _minhash_decisions(cfg: WebConfig) -> DecisionsWriter:
    writer = _decisions(cfg, "minhash_dedup")
    writer.default_reason = "near_duplicate"
    return writer


def run_web(cfg: WebConfig, config_path: str | Path | None = None, fresh: bool = False) -> dict[str, Path]:
    """Run every stage (resuming finished tasks unless `fresh`), then write the artifacts' manifests."""
    if fresh:
        for d in (cfg.work, cfg.output):
            shutil.rmtree(d, ignore_errors=True)
    cfg.work.mkdir(parents=True, exist_ok=True)
    cfg.output.mkdir(parents=True, exist_ok=True)
    thresholds_file = cfg.work / "thresholds.json"
    logs = cfg.work / "logs"
    previous = None
    blocking = True
    for stage in build_stages(cfg, thresholds_file):
        exec_cfg = cfg.executor if stage.tasks == 0 else _single(cfg.executor, stage.tasks)
        blocking = cfg.executor.kind in ("local", "ray")
        executor = make_executor(stage.pipeline, exec_cfg, logs / stage.name, depends=None if blocking else previous)
        if blocking:
            executor.run()  # local and Ray executors return when the stage is done
        previous = executor
    if not blocking:
        previous.run()  # Slurm: submitting the last stage submits the whole `depends` chain and returns
        return {}
    return write_manifests(cfg, config_path, thresholds_file, logs)


def _single(base: ExecutorConfig, tasks: int) -> ExecutorConfig:
    return base.model_copy(update={"tasks": tasks, "workers": min(tasks, max(base.workers, 1))})


def write_manifests(cfg: WebConfig, config_path, thresholds_file: Path, logs: Path) -> dict[str, Path]:
    import json

    inputs = [InputRef(path=spec.path + (f"/{spec.glob}" if spec.glob else ""), content_hash=_inputs_hash(spec))
              for spec in cfg.inputs]  # fmt: skip
    if config_path is not None:
        inputs.append(InputRef(path=str(config_path), content_hash=content_hash(config_path)))
    thresholds = json.loads(thresholds_file.read_text()) if thresholds_file.exists() else None
    log_dirs = sorted(p for p in logs.iterdir() if p.is_dir())
    out: dict[str, Path] = {}
    groups = {WEB: ["level", "language", "bucket"], MATH: ["level"], MULTILINGUAL: ["language"]}
    for artifact, group_by in groups.items():
        directory = cfg.output / artifact
        directory.mkdir(parents=True, exist_ok=True)
        write_run_manifest(
            directory, kind="documents", name=f"{cfg.name}-{artifact}", config=cfg, config_path=config_path,
            inputs=inputs, logging_dirs=log_dirs, group_by=group_by, extra={"quality_thresholds": thresholds},
        )  # fmt: skip
        out[artifact] = directory
    decisions_dir = cfg.output / "decisions"
    decisions_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(decisions_dir, kind="decisions", name=f"{cfg.name}-decisions", command="nano2 curate web",
                   config=cfg, config_path=str(config_path) if config_path else None, inputs=inputs)  # fmt: skip
    out["decisions"] = decisions_dir
    return out


def _inputs_hash(spec) -> str | None:
    """Content hash of local inputs (remote ones are recorded by path only)."""
    if "://" in spec.path:
        return None
    root = Path(spec.path)
    if not root.exists():
        raise Nano2Error(f"input {spec.path}: not found")
    import hashlib

    digest = hashlib.sha256()
    files = sorted(root.glob(spec.glob)) if spec.glob else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        digest.update(f"{f.name}\0{content_hash(f)}\n".encode())
    return digest.hexdigest()
