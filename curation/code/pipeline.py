"""The code curation pipeline assembled from a CodeConfig, as a chain of datatrove stages (`curation.stages`).

    filter        read repositories -> repository licenses -> input issues -> language -> heuristics
                  -> file licenses -> work/filtered/
    exact-*       signatures of whitespace-normalised content -> find duplicates -> drop them -> work/unique/
    minhash-*     datatrove MinHash: signatures -> buckets -> clusters
    output        drop near-duplicates -> count tokens -> <output_dir>/<rank>.parquet (the document contract)

Every drop lands in the decisions beside the output (`nano2.contracts.shards.decisions_dir`: `<run>/decisions/
curated/code` in a run dir, else `<output_dir>.decisions`), one folder per step, with its reason; intermediate
files and datatrove logs live in the work directory (outside the artifact, so neither the manifest nor the audit
takes them for data). A rerun of the same config skips the tasks that completed (datatrove's resume).
"""

from __future__ import annotations

import hashlib
import shutil
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
from curation.code.dedup import CodeMinhashSignature, normalized_content
from curation.code.filters import InputIssueFilter, LanguageFilter
from curation.code.heuristics import CodeHeuristicsFilter
from curation.code.license_stage import FileLicenseFilter, RepositoryLicenses, preload
from curation.code.reader import CodeRepositoryReader
from curation.code.sources import SitePackagesSource, directory_content_hash
from curation.decisions import DecisionsWriter, nothing_left_reason
from curation.documents import DocumentWriter
from curation.licenses.allowlist import load_allowlist
from curation.licenses.detector import scancode_version
from curation.manifests import write_decisions_manifest, write_run_manifest
from curation.stages import Stage, StageLauncher, StageStarted, run_stages
from curation.tokens import counting_tokenizer_id, resolve_tokenizer
from nano2.contracts.documents import ID, METADATA_TYPE, SOURCE, SUBSET_KEY, TEXT, Meta
from nano2.contracts.shards import SHARD_SUFFIX, decisions_dir
from nano2.errors import Nano2Error
from nano2.manifest import MANIFEST_NAME, InputRef, Manifest, input_ref, read_manifest, recorded_path

# What the manifest counts by (the audit's queries and the CLI's summary read these).
GROUPINGS = [SUBSET_KEY, Meta.CODE_LANGUAGE, Meta.LICENSE_SPDX, Meta.LICENSE_SOURCE]
# Rows between stages (work dir, not a document folder): the document's contract fields as flat columns, which
# datatrove's ParquetReader puts back into metadata.
WORK_FIELDS = [
    Meta.REPO, Meta.PATH, Meta.CODE_LANGUAGE, Meta.SIZE, Meta.BLOB_HASH, Meta.LICENSE_EXPRESSION, Meta.LICENSE_SPDX,
    Meta.LICENSE_SOURCE, Meta.LICENSE_SOURCE_PATH,
]  # fmt: skip
WORK_SCHEMA = pa.schema(
    [(TEXT, pa.string()), (ID, pa.string()), (SOURCE, pa.string())]
    + [(str(key), METADATA_TYPE.field(key).type) for key in WORK_FIELDS]
)


def work_row(writer: Any, doc: Document) -> dict:
    """An intermediate row: text, id, source and the contract fields the stages have set so far."""
    meta = doc.metadata
    return {TEXT: doc.text, ID: doc.id, SOURCE: meta.get(SOURCE), **{str(key): meta.get(key) for key in WORK_FIELDS}}


class WorkReader(ParquetReader):
    """Reads the rows a previous stage wrote; none at all (every file dropped) is an empty input, not an error."""

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if not self.data_folder.list_files(recursive=self.recursive, glob_pattern=self.glob_pattern):
            self.stat_update("empty_input")
            if data:
                yield from data
            return
        yield from super().run(data, rank, world_size)


def _work_writer(folder: Path) -> ParquetWriter:
    return ParquetWriter(str(folder), adapter=work_row, schema=WORK_SCHEMA, use_content_defined_chunking=False)


def build_stages(cfg: CodeConfig) -> list[Stage]:
    """The stages of a run, in order; each reads what the previous one wrote."""
    work = cfg.resolved_work_dir()
    logs = work / "logs"
    out = Path(cfg.output_dir)
    settings = cfg.license.detector_settings()
    filtered = work / "filtered"
    stages = [
        Stage("filter", [
            CodeRepositoryReader(cfg.source, cfg.input.limits()),
            RepositoryLicenses(settings, cfg.license.cache_path, cfg.license.allowlist),
            InputIssueFilter(exclusion_writer=DecisionsWriter(out, "code_input")),
            LanguageFilter(cfg.languages, exclusion_writer=DecisionsWriter(out, "code_language")),
            CodeHeuristicsFilter(cfg.heuristics.settings(), exclusion_writer=DecisionsWriter(out, "code_heuristics")),
            FileLicenseFilter(settings, cfg.license.cache_path, cfg.license.allowlist,
                              exclusion_writer=DecisionsWriter(out, "code_license")),
            _work_writer(filtered),
        ], logs / "filter"),
    ]  # fmt: skip
    current = filtered
    if cfg.dedup.exact:
        exact = ExactDedupConfig(content_getter=normalized_content)
        unique, sigs, dups = work / "unique", str(work / "exact" / "sigs"), str(work / "exact" / "dups")
        exact_drops = DecisionsWriter(out, "code_exact_dedup", default_reason="exact_duplicate")
        stages += [
            Stage("exact-signatures", [WorkReader(str(current)), ExactDedupSignature(sigs, exact)],
                  logs / "exact-signatures"),
            Stage("exact-find", [ExactFindDedups(sigs, dups, exact)], logs / "exact-find", tasks=1),
            Stage("exact-filter", [
                WorkReader(str(current)), ExactDedupFilter(dups, exact, exclusion_writer=exact_drops),
                _work_writer(unique),
            ], logs / "exact-filter"),
        ]  # fmt: skip
        current = unique
    final: list = [WorkReader(str(current))]
    if cfg.dedup.minhash:
        minhash = MinhashConfig(
            n_grams=cfg.dedup.n_grams, num_buckets=cfg.dedup.num_buckets, hashes_per_bucket=cfg.dedup.hashes_per_bucket
        )
        sigs, buckets, remove = (str(work / "minhash" / part) for part in ("sigs", "buckets", "remove"))
        stages += [
            Stage("minhash-signatures", [WorkReader(str(current)), CodeMinhashSignature(sigs, minhash)],
                  logs / "minhash-signatures"),
            Stage("minhash-buckets", [MinhashDedupBuckets(sigs, buckets, config=minhash)], logs / "minhash-buckets",
                  tasks=cfg.dedup.num_buckets),
            Stage("minhash-cluster", [MinhashDedupCluster(buckets, remove, config=minhash)], logs / "minhash-cluster",
                  tasks=1),
        ]  # fmt: skip
        near_drops = DecisionsWriter(out, "code_near_dedup", default_reason="near_duplicate")
        final.append(MinhashDedupFilter(remove, exclusion_writer=near_drops))
    final += [
        TokensCounter(tokenizer_name_or_path=resolve_tokenizer(cfg.tokenizer)),
        DocumentWriter(out, subset_from=Meta.CODE_LANGUAGE),
    ]
    stages.append(Stage("output", final, logs / "output"))
    return stages


def clear_previous_run(cfg: CodeConfig) -> None:
    """Remove the work directory, the decisions and a previous output of this pipeline (never a directory it did
    not write)."""
    out = Path(cfg.output_dir)
    if out.exists() and any(out.iterdir()):
        if (out / MANIFEST_NAME).exists():
            ours = read_manifest(out).name == cfg.name
        else:  # an interrupted run: only the shards the output stage writes
            ours = all(p.suffix == SHARD_SUFFIX for p in out.iterdir())
        if not ours:
            raise Nano2Error(f"{out}: not empty and not an output of `{cfg.name}`; refusing to delete it")
        shutil.rmtree(out)
    shutil.rmtree(decisions_dir(out), ignore_errors=True)  # named after our output: only we write there
    shutil.rmtree(cfg.resolved_work_dir(), ignore_errors=True)


def source_inputs(cfg: CodeConfig) -> list[InputRef]:
    """How the manifest records the input: site-packages by its distributions, other sources by content hash."""
    source = cfg.source
    if isinstance(source, SitePackagesSource):
        installed = source.installed()
        listing = "\n".join(f"{name}=={installed[name].version}" for name in source.units())
        return [InputRef(path=str(source.site_dir()), content_hash=hashlib.sha256(listing.encode()).hexdigest())]
    if source.kind == "repositories":  # hashed without following links: a dangling one is input, not a crash
        return [InputRef(path=recorded_path(source.root), content_hash=directory_content_hash(Path(source.root)))]
    return [input_ref(path) for path in source.units()]


def run_pipeline(
    cfg: CodeConfig,
    config_path: str | Path | None = None,
    on_stage: StageStarted | None = None,
    run_stage: StageLauncher | None = None,
) -> Manifest | None:
    """Run every stage, then write the manifests; `on_stage`/`run_stage` let the CLI show progress and quiet logs.

    Slurm stages are submitted as one dependency chain and the call returns None at once: `write_code_manifest`
    (`nano2 curate code CONFIG --manifest-only`) finishes the run.
    """
    load_allowlist(cfg.license.allowlist)  # fail early on a missing or broken allow-list
    cfg.source.units()  # ... and on a missing root, table or distribution
    stages = build_stages(cfg)
    work = cfg.resolved_work_dir()
    for folder in (work / "filtered", work / "unique"):  # a run that keeps nothing reads empty folders, not none
        folder.mkdir(parents=True, exist_ok=True)
    if cfg.executor.kind == "local" and cfg.executor.workers != 1:
        preload()  # forked workers then share the ScanCode index pages instead of loading 1.4 GB each
    if not run_stages(stages, cfg.executor, on_stage=on_stage, run_stage=run_stage):
        return None
    return write_code_manifest(cfg, config_path, stages)


def write_code_manifest(cfg: CodeConfig, config_path: str | Path | None, stages: list[Stage] | None = None) -> Manifest:
    """The output's manifest (inputs, per-step counters of every stage, documents/tokens by language and license)
    and the manifest of its decisions; returns the output's."""
    allowlist = load_allowlist(cfg.license.allowlist)
    stages = stages if stages is not None else build_stages(cfg)
    inputs = source_inputs(cfg)
    extra = {
        "license": {
            "scancode_toolkit_version": scancode_version(), "allowlist": cfg.license.allowlist,
            "allowlist_sha256": allowlist.sha256, "allowed_licenses": len(allowlist.allowed),
        },
        "work_dir": str(cfg.resolved_work_dir()),
    }  # fmt: skip
    if not any(Path(cfg.output_dir).rglob(f"*{SHARD_SUFFIX}")):  # say why it is empty
        extra["empty_reason"] = nothing_left_reason(decisions_dir(cfg.output_dir), after="curation", items="file")
    manifest = write_run_manifest(
        cfg.output_dir, name=cfg.name, config=cfg, config_path=config_path, inputs=inputs,
        logging_dirs=[s.logging_dir for s in stages], tokenizer=counting_tokenizer_id(cfg.tokenizer),
        group_by=GROUPINGS, extra=extra,
    )  # fmt: skip
    write_decisions_manifest(cfg.output_dir, name=f"{cfg.name}-decisions", config=cfg, config_path=config_path,
                             inputs=inputs)  # fmt: skip
    return manifest


def step_drops(manifest: Manifest) -> dict[str, dict[str, int]]:
    """step name -> {reason: files dropped}, from the per-step counters in the manifest."""
    out: dict[str, dict[str, int]] = {}
    for step in manifest.extra.get("steps", []):
        reasons = {k.removeprefix("dropped_"): int(v) for k, v in step["stats"].items() if k.startswith("dropped_")}
        if reasons:
            out[step["step"]] = reasons
    return out
