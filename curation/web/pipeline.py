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

from datatrove.pipeline.base import PipelineStep

from curation.decisions import DecisionsWriter, nothing_left_reason
from curation.documents import WorkingDocumentsWriter
from curation.manifests import write_decisions_manifest, write_run_manifest
from curation.stages import Stage, run_stages
from curation.tokens import counting_tokenizer_id, resolve_tokenizer
from curation.web.config import InputSpec, WebConfig
from curation.web.dedup import AssignKeys, ExactDedupFilter, ExactFindDuplicates, ExactHashSignature
from curation.web.readers import JsonlDocuments, WarcDocuments
from curation.web.routing import MATH, MULTILINGUAL, WEB, RouteWriter
from curation.web.steps import (
    FastExtractor,
    FastMinhashSignature,
    HeuristicFilters,
    LanguageID,
    OfflineURLFilter,
    SharedTokensCounter,
)
from curation.web.words import RegexWordTokenizer
from nano2.contracts.documents import SUBSET_KEY, Meta
from nano2.contracts.shards import SHARD_SUFFIX, decisions_dir
from nano2.errors import Nano2Error
from nano2.manifest import InputRef, content_hash

# What each artifact's manifest counts by: `subset` is what mixtures read, the rest is for the audit.
GROUPINGS = {
    WEB: [SUBSET_KEY, Meta.LEVEL, Meta.LANGUAGE, Meta.BUCKET],
    MATH: [SUBSET_KEY, Meta.LEVEL],
    MULTILINGUAL: [SUBSET_KEY, Meta.LANGUAGE],
}


TOKEN_BATCH_DOCS = 64  # documents per token-counting batch in the extract stage

# What each artifact receives, for the reason of an empty one.
ROUTED_HERE = {
    WEB: "English pages without math",
    MATH: "English pages with math",
    MULTILINGUAL: "pages in the configured multilingual languages",
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


def build_stages(cfg: WebConfig, thresholds_file: Path, saved_thresholds: Path | None = None) -> list[Stage]:
    from datatrove.pipeline.dedup import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
    )
    from datatrove.pipeline.readers import JsonlReader

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
                subword_match=uf.subword_match,
                exclusion_writer=_decisions(cfg, "url_filter"),
            )
        )
    extract_steps += [
        FastExtractor(
            math_aware=cfg.extraction.math_aware, favour=cfg.extraction.favour, decisions=_decisions(cfg, "extract")
        ),
        LanguageID(_languages(cfg), cfg.language.min_score, decisions=_decisions(cfg, "language")),
        HeuristicFilters(decisions=_decisions(cfg, "heuristics")),
        # datatrove's default batch (10,000 documents, texts and encodings held at once) is most files: memory then
        # grows with the file; a small batch keeps it flat (benchmarks/bench_extract_memory.py)
        SharedTokensCounter(resolve_tokenizer(cfg.tokenizer), batch_size=TOKEN_BATCH_DOCS),
    ]
    if cfg.dedup.exact:
        extract_steps.append(ExactHashSignature(str(work / "exact" / "signatures")))
    extract_steps.append(WorkingDocumentsWriter(work / "extracted"))
    stages = [Stage("extract", extract_steps, logs / "extract")]

    if cfg.dedup.exact:
        find = ExactFindDuplicates(str(work / "exact" / "signatures"), str(work / "exact"))
        stages.append(Stage("exact-find", [find], logs / "exact-find", tasks=1, reads=(work / "exact" / "signatures",)))
    mh = cfg.dedup.minhash
    mh_config = MinhashConfig(n_grams=mh.n_grams, num_buckets=mh.num_buckets, hashes_per_bucket=mh.hashes_per_bucket)
    mh_config.seed = mh.seed
    mh_dir = work / "minhash"
    if mh.enabled:
        signatures = FastMinhashSignature(str(mh_dir / "signatures"), config=mh_config, language=RegexWordTokenizer())
        stages += [
            Stage("minhash-signatures", [JsonlReader(str(work / "extracted")), signatures],
                  logs / "minhash-signatures", reads=(work / "extracted",)),
            Stage("minhash-buckets",
                  [MinhashDedupBuckets(str(mh_dir / "signatures"), str(mh_dir / "buckets"), config=mh_config)],
                  logs / "minhash-buckets", tasks=mh.num_buckets, reads=(mh_dir / "signatures",)),
            Stage("minhash-cluster",
                  [MinhashDedupCluster(str(mh_dir / "buckets"), str(mh_dir / "remove"), config=mh_config)],
                  logs / "minhash-cluster", tasks=1, reads=(mh_dir / "buckets",)),
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
    fit = thresholds_step(cfg, work / "scores", thresholds_file, saved_thresholds)
    write = [JsonlReader(str(work / "scored")), quality_bucket_step(cfg, thresholds_file), RouteWriter(cfg.output)]
    stages += [
        Stage("dedup-score", score_steps, logs / "dedup-score", reads=(work / "extracted",)),
        Stage("thresholds", [fit], logs / "thresholds", tasks=1, reads=(work / "scores",)),
        Stage("bucket-write", write, logs / "bucket-write", reads=(work / "scored",)),
    ]
    return stages


# Stages that read a working folder an earlier stage wrote: when that folder holds no document, nothing is left
# for them (datatrove's readers raise "No files found"), so the run stops there with an empty result and a reason.
_READS = {"exact-find": "extracted", "minhash-signatures": "extracted", "dedup-score": "extracted",
          "thresholds": "scored", "bucket-write": "scored"}  # fmt: skip
RUN_STATE = "run.json"  # in the work dir: which config and inputs its state belongs to


def run_web(
    cfg: WebConfig, config_path: str | Path | None = None, fresh: bool = False, thresholds: Path | None = None
) -> dict[str, Path]:
    """Run every stage (resuming finished tasks unless `fresh`), then write the artifacts' manifests; `thresholds`
    (a saved thresholds file or run manifest) levels the documents on that scale instead of fitting new ones.

    A stage whose input is empty (nothing survived the steps before it) is not run: the artifacts are written empty
    with the reason in their manifests and the decisions' manifest. Resuming into a work or output dir that holds
    the state of another config or other inputs is refused (`fresh` starts clean), so documents of an old run never
    sit under a manifest naming the new one."""
    if fresh:  # only what this pipeline writes: `output_dir` may hold other pipelines' folders (curated/code)
        for d in (cfg.work, *(cfg.output / a for a in GROUPINGS), decisions_dir(decisions_artifact(cfg))):
            shutil.rmtree(d, ignore_errors=True)
    fingerprint = run_fingerprint(cfg, thresholds)
    check_same_run(cfg, fingerprint)
    cfg.work.mkdir(parents=True, exist_ok=True)
    cfg.output.mkdir(parents=True, exist_ok=True)
    (cfg.work / RUN_STATE).write_text(json.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8")
    thresholds_file = cfg.work / "thresholds.json"
    stages = build_stages(cfg, thresholds_file, thresholds)
    if cfg.executor.kind == "slurm":  # the last job of the chain writes the manifests when the others succeeded
        logging_dirs = [stage.logging_dir for stage in stages]
        manifests = WriteManifests(cfg, config_path, thresholds_file, logging_dirs, fingerprint)
        run_stages([*stages, Stage("manifests", [manifests], cfg.work / "logs" / "manifests", tasks=1)], cfg.executor)
        return {}  # submitted: the manifests appear when the jobs finish
    empty_reason = None
    ran: list[Stage] = []
    for stage in stages:
        source = _READS.get(stage.name)
        if source is not None and not has_documents(cfg.work / source):
            empty_reason = nothing_left_reason(
                decisions_dir(decisions_artifact(cfg)), after=ran[-1].name if ran else "read"
            )
            break
        run_stages([stage], cfg.executor)
        ran.append(stage)
    return write_manifests(
        cfg, config_path, thresholds_file, [stage.logging_dir for stage in ran], empty_reason, fingerprint
    )


class WriteManifests(PipelineStep):
    """The last job of a run submitted to a cluster: the artifacts' manifests (`write_manifests`), as a local run
    writes them after its last stage."""

    name = "🧾 Write manifests"
    type = "📝 - WRITER"

    def __init__(self, cfg: WebConfig, config_path, thresholds_file: Path, logging_dirs: list[Path], fingerprint: str):
        super().__init__()
        self.cfg, self.config_path, self.thresholds_file = cfg, config_path, thresholds_file
        self.logging_dirs, self.fingerprint = logging_dirs, fingerprint

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        written = write_manifests(
            self.cfg, self.config_path, self.thresholds_file, self.logging_dirs, fingerprint=self.fingerprint
        )
        self.stat_update("manifests", value=len(written) + 1)  # the artifacts and the decisions
        if data:
            yield from data


def has_documents(folder: Path) -> bool:
    """Whether a working folder holds at least one document (datatrove's writers create files lazily, so an empty
    stage leaves no file, or only empty ones)."""
    from datatrove.pipeline.readers import JsonlReader

    if not folder.is_dir():
        return False
    files = [p for p in folder.rglob("*") if p.is_file() and p.stat().st_size > 0]
    if not files:
        return False
    return next(iter(JsonlReader(str(folder), limit=1).run()), None) is not None


def run_fingerprint(cfg: WebConfig, thresholds: Path | None) -> str:
    """What the state of a run depends on: the config (all but its name and where it runs) and the inputs' files
    (name, size, mtime; remote inputs by path). Cheap, so a rerun can check it before anything is read. The task
    count stays in (datatrove's completions and shards are per rank); the executor kind, workers and cluster
    options do not, so a run submitted to Slurm can be finished or inspected locally."""
    config = cfg.model_dump(mode="json", exclude={"name": True, "executor": {"kind", "workers", "slurm", "ray"}})
    state: dict = {"config": config, "thresholds": str(thresholds or "")}
    listing = []
    for spec in cfg.inputs:
        root = Path(spec.path)
        if "://" in spec.path or not root.exists():
            listing.append(spec.path)
            continue
        files = sorted(root.glob(spec.glob)) if spec.glob else sorted(p for p in root.rglob("*") if p.is_file())
        listing += [f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.is_file()]
    state["inputs"] = listing
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()[:16]


def check_same_run(cfg: WebConfig, fingerprint: str) -> None:
    """Refuse to resume state (work dir) or to add to artifacts (output dir) that another config or other inputs
    made; the error says how to start clean."""
    from nano2.manifest import read_manifest

    recorded: list[tuple[Path, str | None]] = []
    state = cfg.work / RUN_STATE
    if state.exists():
        try:
            recorded.append((cfg.work, json.loads(state.read_text(encoding="utf-8")).get("fingerprint")))
        except (json.JSONDecodeError, AttributeError):
            recorded.append((cfg.work, None))
    elif cfg.work.is_dir() and any(cfg.work.iterdir()):
        recorded.append((cfg.work, None))  # state of a run that predates the fingerprint: cannot tell, refuse
    for artifact in GROUPINGS:
        directory = cfg.output / artifact
        if (directory / "manifest.json").exists():
            try:
                recorded.append((directory, read_manifest(directory).extra.get("run_fingerprint")))
            except Nano2Error:
                recorded.append((directory, None))
        elif directory.is_dir() and any(directory.rglob("*.parquet")):
            recorded.append((directory, None))
    for where, previous in recorded:
        if previous != fingerprint:
            raise Nano2Error(
                f"{where}: holds a run of another config or other inputs; rerun with --fresh to start clean there "
                "(or give this config its own output_dir and work_dir)"
            )


def write_manifests(
    cfg: WebConfig,
    config_path: str | Path | None,
    thresholds_file: Path,
    logging_dirs: list[Path],
    empty_reason: str | None = None,
    fingerprint: str | None = None,
) -> dict[str, Path]:
    """The manifest of each document folder (written even when it is empty, then with `empty_reason`: why nothing
    is in it) and of the decisions (with the run's `empty_reason` when the run stopped early)."""
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
        extra = {"quality_thresholds": thresholds, "run_fingerprint": fingerprint}
        if not any(directory.rglob(f"*{SHARD_SUFFIX}")):  # say why it is empty: the run stopped, or none routed here
            extra["empty_reason"] = empty_reason or f"no document was routed to {artifact}/ ({ROUTED_HERE[artifact]})"
        write_run_manifest(
            directory, name=f"{cfg.name}-{artifact}", config=cfg, config_path=config_path, inputs=inputs,
            logging_dirs=logging_dirs, tokenizer=tokenizer, group_by=group_by, extra=extra,
        )  # fmt: skip
        out[artifact] = directory
    write_decisions_manifest(decisions_artifact(cfg), name=f"{cfg.name}-decisions", config=cfg,
                             config_path=config_path, inputs=inputs,
                             extra={"empty_reason": empty_reason} if empty_reason else None)  # fmt: skip
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
