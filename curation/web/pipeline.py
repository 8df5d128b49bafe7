"""The Nemotron-CC web pipeline as a chain of datatrove stages (`curation.stages`), assembled from a `WebConfig`.

Stages (each its own executor and logging dir, so a rerun skips finished tasks):
1. extract: read (WARC / JSONL) -> keys -> URL filter -> main-text extraction (math-aware) -> language ID ->
   heuristic filters -> token counts -> exact-dedup signatures -> JSONL (`work/extracted`).
   Intermediate stages are JSONL (schema-free: documents of different sources carry different metadata);
   the final artifacts are document folders of the contract (nano2.contracts.documents).
2. exact-find (1 task): duplicates of the normalised content hash.
3. minhash-sig, 4. minhash-buckets, 5. minhash-cluster: datatrove's MinHash stages over `work/extracted`.
6. dedup+score: read `work/extracted` -> MinHash filter -> exact filter -> quality scores (English) -> `work/scored`.
7. thresholds (1 task): token-weighted 20-bin thresholds per classifier from the English scores.
8. bucket+write: per-classifier buckets, ensemble = max, level; write `web/subset=<level>`, `math/subset=<level>`,
   `multilingual/subset=<language>` under `output_dir`, then manifests.
Drops of every stage go to the decisions beside `web/` (`nano2.contracts.shards.decisions_dir`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from curation.decisions import DecisionsWriter
from curation.documents import WorkingDocumentsWriter
from curation.manifests import write_decisions_manifest, write_run_manifest
from curation.stages import Stage, run_stages
from curation.tokens import counting_tokenizer_id, resolve_tokenizer
from curation.web.config import InputSpec, WebConfig
from curation.web.dedup import AssignKeys, ExactDedupFilter, ExactFindDuplicates, ExactHashSignature
from curation.web.readers import JsonlDocuments, WarcDocuments
from curation.web.routing import MATH, MULTILINGUAL, WEB, RouteWriter
from curation.web.steps import FastExtractor, HeuristicFilters, LanguageID, OfflineURLFilter
from curation.web.words import RegexWordTokenizer
from nano2.contracts.documents import SUBSET_KEY, Meta
from nano2.contracts.shards import decisions_dir
from nano2.errors import Nano2Error
from nano2.manifest import InputRef, content_hash

# What each artifact's manifest counts by: `subset` is what mixtures read, the rest is for the audit.
GROUPINGS = {
    WEB: [SUBSET_KEY, Meta.LEVEL, Meta.LANGUAGE, Meta.BUCKET],
    MATH: [SUBSET_KEY, Meta.LEVEL],
    MULTILINGUAL: [SUBSET_KEY, Meta.LANGUAGE],
}


def decisions_artifact(cfg: WebConfig) -> Path:
    """The artifact the run's decisions are written beside: `web/` (every drop happens before routing)."""
    return cfg.output / WEB


def _decisions(cfg: WebConfig, step: str, default_reason: str | None = None) -> DecisionsWriter:
    return DecisionsWriter(decisions_artifact(cfg), step, default_reason=default_reason)


def _readers(cfg: WebConfig) -> list:
    """One reader per input; they share one decisions writer, since they all write the `read` step's shard."""
    read_drops = _decisions(cfg, "read")
    readers = []
    for spec in cfg.inputs:
        if spec.kind == "warc":
            readers.append(WarcDocuments(spec.path, glob_pattern=spec.glob, limit=spec.limit, decisions=read_drops))
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
                    decisions=read_drops,
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

    from curation.web.quality_stage import quality_bucket_step, quality_score_steps, thresholds_step

    work = cfg.work
    logs = work / "logs"
    extract_steps = [*_readers(cfg), AssignKeys()]
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
    extract_steps.append(WorkingDocumentsWriter(work / "extracted"))
    stages = [Stage("extract", extract_steps, logs / "extract")]

    if cfg.dedup.exact:
        find = ExactFindDuplicates(str(work / "exact" / "signatures"), str(work / "exact"))
        stages.append(Stage("exact-find", [find], logs / "exact-find", tasks=1))
    mh = cfg.dedup.minhash
    mh_config = MinhashConfig(n_grams=mh.n_grams, num_buckets=mh.num_buckets, hashes_per_bucket=mh.hashes_per_bucket)
    mh_config.seed = mh.seed
    mh_dir = work / "minhash"
    if mh.enabled:
        signatures = MinhashDedupSignature(str(mh_dir / "signatures"), config=mh_config, language=RegexWordTokenizer())
        stages += [
            Stage("minhash-signatures", [JsonlReader(str(work / "extracted")), signatures],
                  logs / "minhash-signatures"),
            Stage("minhash-buckets",
                  [MinhashDedupBuckets(str(mh_dir / "signatures"), str(mh_dir / "buckets"), config=mh_config)],
                  logs / "minhash-buckets", tasks=mh.num_buckets),
            Stage("minhash-cluster",
                  [MinhashDedupCluster(str(mh_dir / "buckets"), str(mh_dir / "remove"), config=mh_config)],
                  logs / "minhash-cluster", tasks=1),
        ]  # fmt: skip
    score_steps: list = [JsonlReader(str(work / "extracted"))]
    if mh.enabled:
        score_steps.append(
            MinhashDedupFilter(
                str(mh_dir / "remove"), exclusion_writer=_decisions(cfg, "minhash_dedup", "near_duplicate")
            )
        )
    if cfg.dedup.exact:
        score_steps.append(ExactDedupFilter(str(work / "exact"), decisions=_decisions(cfg, "exact_dedup")))
    score_steps += [*quality_score_steps(cfg), WorkingDocumentsWriter(work / "scored")]
    fit = thresholds_step(cfg, work / "scored", thresholds_file)
    write = [JsonlReader(str(work / "scored")), quality_bucket_step(cfg, thresholds_file), RouteWriter(cfg.output)]
    stages += [
        Stage("dedup-score", score_steps, logs / "dedup-score"),
        Stage("thresholds", [fit], logs / "thresholds", tasks=1),
        Stage("bucket-write", write, logs / "bucket-write"),
    ]
    return stages


def run_web(cfg: WebConfig, config_path: str | Path | None = None, fresh: bool = False) -> dict[str, Path]:
    """Run every stage (resuming finished tasks unless `fresh`), then write the artifacts' manifests."""
    if fresh:  # only what this pipeline writes: `output_dir` may hold other pipelines' folders (curated/code)
        for d in (cfg.work, *(cfg.output / a for a in GROUPINGS), decisions_dir(decisions_artifact(cfg))):
            shutil.rmtree(d, ignore_errors=True)
    cfg.work.mkdir(parents=True, exist_ok=True)
    cfg.output.mkdir(parents=True, exist_ok=True)
    thresholds_file = cfg.work / "thresholds.json"
    stages = build_stages(cfg, thresholds_file)
    if not run_stages(stages, cfg.executor):
        return {}  # submitted to Slurm: a local rerun writes the manifests
    return write_manifests(cfg, config_path, thresholds_file, [stage.logging_dir for stage in stages])


def write_manifests(
    cfg: WebConfig, config_path: str | Path | None, thresholds_file: Path, logging_dirs: list[Path]
) -> dict[str, Path]:
    """The manifest of each document folder (written even when it is empty) and of the decisions."""
    inputs = [InputRef(path=spec.path + (f"/{spec.glob}" if spec.glob else ""), content_hash=_inputs_hash(spec))
              for spec in cfg.inputs]  # fmt: skip
    if config_path is not None:
        inputs.append(InputRef(path=str(config_path), content_hash=content_hash(config_path)))
    thresholds = json.loads(thresholds_file.read_text()) if thresholds_file.exists() else None
    tokenizer = counting_tokenizer_id(cfg.tokenizer)
    out: dict[str, Path] = {}
    for artifact, group_by in GROUPINGS.items():
        directory = cfg.output / artifact
        directory.mkdir(parents=True, exist_ok=True)
        write_run_manifest(
            directory, name=f"{cfg.name}-{artifact}", config=cfg, config_path=config_path, inputs=inputs,
            logging_dirs=logging_dirs, tokenizer=tokenizer, group_by=group_by,
            extra={"quality_thresholds": thresholds},
        )  # fmt: skip
        out[artifact] = directory
    write_decisions_manifest(decisions_artifact(cfg), name=f"{cfg.name}-decisions", config=cfg,
                             config_path=config_path, inputs=inputs)  # fmt: skip
    out["decisions"] = decisions_dir(decisions_artifact(cfg))
    return out


def _inputs_hash(spec: InputSpec) -> str | None:
    """Content hash of local inputs (remote ones are recorded by path only)."""
    if "://" in spec.path:
        return None
    root = Path(spec.path)
    if not root.exists():
        raise Nano2Error(f"input {spec.path}: not found")
    digest = hashlib.sha256()
    files = sorted(root.glob(spec.glob)) if spec.glob else sorted(p for p in root.rglob("*") if p.is_file())
    for f in files:
        digest.update(f"{f.name}\0{content_hash(f)}\n".encode())
    return digest.hexdigest()
