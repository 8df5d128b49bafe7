"""The code curation pipeline assembled from a CodeConfig, as a chain of datatrove stages.

    filter        read repositories -> repository licenses -> input issues -> language -> heuristics
                  -> file licenses -> work/filtered/
    exact-*       signatures of whitespace-normalised content -> find duplicates -> drop them -> work/unique/
    minhash-*     datatrove MinHash: signatures -> buckets -> clusters
    output        drop near-duplicates -> count tokens -> <output_dir>/*.parquet

Every drop lands in `<output_dir>/decisions/<step>/` with its reason; intermediate files and datatrove logs live
in the work directory (outside the artifact, so neither the manifest nor the audit takes them for data). Stages are
datatrove executors; a rerun of the same config skips the tasks that completed (datatrove's resume).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.dedup.exact_dedup import (
    ExactDedupConfig,
    ExactDedupFilter,
    ExactDedupSignature,
    ExactFindDedups,
)
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
)
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.tokens import TokensCounter
from datatrove.pipeline.writers import ParquetWriter

from curation.code.config import CodeConfig
from curation.code.dedup import CodeMinhashSignature, ReasonedDecisionsWriter, normalized_content
from curation.code.filters import InputIssueFilter, LanguageFilter
from curation.code.heuristics import CodeHeuristicsFilter
from curation.code.reader import CodeRepositoryReader
from curation.code.sources import SitePackagesSource
from curation.decisions import DecisionsWriter
from curation.executors import make_executor
from curation.licenses.allowlist import load_allowlist
from curation.licenses.detector import scancode_version
from curation.licenses.steps import FileLicenseFilter, RepositoryLicenses, preload
from curation.manifests import write_run_manifest
from curation.tokens import resolve_tokenizer
from nano2.errors import Nano2Error
from nano2.manifest import MANIFEST_NAME, InputRef, Manifest, input_ref, read_manifest

MANIFEST_KIND = "documents"
DOCUMENT_FIELDS = [
    ("text", pa.string()), ("id", pa.string()), ("repo", pa.string()), ("path", pa.string()),
    ("language", pa.string()), ("size", pa.int64()), ("blob_hash", pa.string()),
    ("license_expression", pa.string()), ("license_spdx", pa.string()), ("license_source", pa.string()),
    ("license_source_path", pa.string()),
]  # fmt: skip
WORK_SCHEMA = pa.schema(DOCUMENT_FIELDS)
OUTPUT_METADATA = pa.struct(
    [("token_count", pa.int64()), ("language", pa.string()), ("license_spdx", pa.string()),
     ("license_source", pa.string())]
)  # fmt: skip
OUTPUT_SCHEMA = pa.schema([*DOCUMENT_FIELDS, ("metadata", OUTPUT_METADATA)])


def work_row(writer: Any, doc: Document) -> dict:
    """An intermediate row: the document fields only (datatrove's reader puts them back into metadata)."""
    meta = doc.metadata
    return {"text": doc.text, "id": doc.id, **{name: meta.get(name) for name, _ in DOCUMENT_FIELDS[2:]}}


def output_row(writer: Any, doc: Document) -> dict:
    """A curated document: flat columns, plus the metadata struct the manifest and the audit read."""
    row = work_row(writer, doc)
    meta = doc.metadata
    row["metadata"] = {
        "token_count": meta.get("token_count"), "language": meta.get("language"),
        "license_spdx": meta.get("license_spdx"), "license_source": meta.get("license_source"),
    }  # fmt: skip
    return row


@dataclass
class Stage:
    """One datatrove executor run: a name, its steps, how many tasks and where it logs."""

    name: str
    pipeline: list
    tasks: int
    logging_dir: Path


def build_stages(cfg: CodeConfig) -> list[Stage]:
    """The stages of a run, in order; each reads what the previous one wrote."""
    work = cfg.resolved_work_dir()
    out = str(cfg.output_dir)
    tasks = cfg.executor.tasks
    settings = cfg.license.detector_settings()
    filtered = str(work / "filtered")
    stages = [
        Stage("filter", [
            CodeRepositoryReader(cfg.source, cfg.input.limits()),
            RepositoryLicenses(settings, cfg.license.cache_path, cfg.license.allowlist),
            InputIssueFilter(exclusion_writer=DecisionsWriter(out, "code_input")),
            LanguageFilter(cfg.languages, exclusion_writer=DecisionsWriter(out, "code_language")),
            CodeHeuristicsFilter(cfg.heuristics.settings(), exclusion_writer=DecisionsWriter(out, "code_heuristics")),
            FileLicenseFilter(settings, cfg.license.cache_path, cfg.license.allowlist,
                              exclusion_writer=DecisionsWriter(out, "code_license")),
            ParquetWriter(filtered, adapter=work_row, schema=WORK_SCHEMA, use_content_defined_chunking=False),
        ], tasks, work / "logs" / "filter"),
    ]  # fmt: skip
    current = filtered
    if cfg.dedup.exact:
        exact = ExactDedupConfig(content_getter=normalized_content)
        unique = str(work / "unique")
        stages += [
            Stage("exact-signatures", [ParquetReader(current), ExactDedupSignature(str(work / "exact" / "sigs"),
                                                                                   exact)],
                  tasks, work / "logs" / "exact-signatures"),
            Stage("exact-find", [ExactFindDedups(str(work / "exact" / "sigs"), str(work / "exact" / "dups"), exact)],
                  1, work / "logs" / "exact-find"),
            Stage("exact-filter", [
                ParquetReader(current),
                ExactDedupFilter(str(work / "exact" / "dups"), exact,
                                 exclusion_writer=ReasonedDecisionsWriter(out, "code_exact_dedup", "exact_duplicate")),
                ParquetWriter(unique, adapter=work_row, schema=WORK_SCHEMA, use_content_defined_chunking=False),
            ], tasks, work / "logs" / "exact-filter"),
        ]  # fmt: skip
        current = unique
    final: list = [ParquetReader(current)]
    if cfg.dedup.minhash:
        minhash = MinhashConfig(
            n_grams=cfg.dedup.n_grams, num_buckets=cfg.dedup.num_buckets, hashes_per_bucket=cfg.dedup.hashes_per_bucket
        )
        sigs, buckets, remove = (str(work / "minhash" / part) for part in ("sigs", "buckets", "remove"))
        stages += [
            Stage("minhash-signatures", [ParquetReader(current), CodeMinhashSignature(sigs, minhash)],
                  tasks, work / "logs" / "minhash-signatures"),
            Stage("minhash-buckets", [MinhashDedupBuckets(sigs, buckets, config=minhash)], cfg.dedup.num_buckets,
                  work / "logs" / "minhash-buckets"),
            Stage("minhash-cluster", [MinhashDedupCluster(buckets, remove, config=minhash)], 1,
                  work / "logs" / "minhash-cluster"),
        ]  # fmt: skip
        final.append(
            MinhashDedupFilter(
                remove, exclusion_writer=ReasonedDecisionsWriter(out, "code_near_dedup", "near_duplicate")
            )
        )
    final += [
        TokensCounter(tokenizer_name_or_path=resolve_tokenizer(cfg.tokenizer)),
        ParquetWriter(out, adapter=output_row, schema=OUTPUT_SCHEMA, use_content_defined_chunking=False),
    ]
    stages.append(Stage("output", final, tasks, work / "logs" / "output"))
    return stages


def clear_previous_run(cfg: CodeConfig) -> None:
    """Remove the work directory and a previous output of this pipeline (never a directory it did not write)."""
    out = Path(cfg.output_dir)
    if out.exists() and any(out.iterdir()):
        if (out / MANIFEST_NAME).exists():
            ours = read_manifest(out).name == cfg.name
        else:  # an interrupted run: only what the output stage and the decisions writers make
            ours = all(p.name == "decisions" or p.suffix == ".parquet" for p in out.iterdir())
        if not ours:
            raise Nano2Error(f"{out}: not empty and not an output of `{cfg.name}`; refusing to delete it")
        shutil.rmtree(out)
    shutil.rmtree(cfg.resolved_work_dir(), ignore_errors=True)


def source_inputs(cfg: CodeConfig) -> list[InputRef]:
    """How the manifest records the input: site-packages by its distributions, other sources by content hash."""
    source = cfg.source
    if isinstance(source, SitePackagesSource):
        import hashlib

        installed = source.installed()
        listing = "\n".join(f"{name}=={installed[name].version}" for name in source.units())
        return [InputRef(path=str(source.site_dir()), content_hash=hashlib.sha256(listing.encode()).hexdigest())]
    if source.kind == "repositories":
        return [input_ref(source.root)]
    return [input_ref(path) for path in source.units()]


def run_pipeline(
    cfg: CodeConfig,
    config_path: str | Path | None = None,
    on_stage: Callable[[int, int, Stage], None] | None = None,
    run_stage: Callable[[Stage, Callable[[], Any]], None] | None = None,
) -> Manifest | None:
    """Run every stage, then write the manifest; `on_stage`/`run_stage` let the CLI show progress and quiet logs.

    Local and Ray executors block, stage after stage. Slurm stages are submitted as one dependency chain and the
    call returns None at once: `write_code_manifest` (`nano2 curate code CONFIG --manifest-only`) finishes the run.
    """
    load_allowlist(cfg.license.allowlist)  # fail early on a missing or broken allow-list
    cfg.source.units()  # ... and on a missing root, table or distribution
    stages = build_stages(cfg)
    if cfg.executor.kind == "slurm":
        previous = None
        for stage in stages:
            previous = make_executor(stage.pipeline, cfg.executor.model_copy(update={"tasks": stage.tasks}),
                                     stage.logging_dir, depends=previous)  # fmt: skip
        previous.run()
        return None
    if cfg.executor.kind == "local" and cfg.executor.workers != 1:
        preload()  # forked workers then share the ScanCode index pages instead of loading 1.4 GB each
    for i, stage in enumerate(stages):
        if on_stage is not None:
            on_stage(i, len(stages), stage)
        executor = make_executor(stage.pipeline, cfg.executor.model_copy(update={"tasks": stage.tasks}),
                                 stage.logging_dir)  # fmt: skip
        if run_stage is not None:
            run_stage(stage, executor.run)
        else:
            executor.run()
    return write_code_manifest(cfg, config_path, stages)


def write_code_manifest(cfg: CodeConfig, config_path: str | Path | None, stages: list[Stage] | None = None) -> Manifest:
    """The output's manifest: inputs, per-step counters of every stage, documents/tokens by language and license."""
    allowlist = load_allowlist(cfg.license.allowlist)
    stages = stages if stages is not None else build_stages(cfg)
    extra = {
        "license": {
            "scancode_toolkit_version": scancode_version(), "allowlist": cfg.license.allowlist,
            "allowlist_sha256": allowlist.sha256, "allowed_licenses": len(allowlist.allowed),
        },
        "work_dir": str(cfg.resolved_work_dir()),
    }  # fmt: skip
    return write_run_manifest(
        cfg.output_dir, kind=MANIFEST_KIND, name=cfg.name, config=cfg, config_path=config_path,
        inputs=source_inputs(cfg), logging_dirs=[s.logging_dir for s in stages],
        group_by=["language", "license_spdx", "license_source"], extra=extra,
    )  # fmt: skip


def step_drops(manifest: Manifest) -> dict[str, dict[str, int]]:
    """step name -> {reason: files dropped}, from the per-step counters in the manifest."""
    out: dict[str, dict[str, int]] = {}
    for step in manifest.extra.get("steps", []):
        reasons = {k.removeprefix("dropped_"): int(v) for k, v in step["stats"].items() if k.startswith("dropped_")}
        if reasons:
            out[step["step"]] = reasons
    return out
