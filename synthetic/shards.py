"""Sharded synthesis: every stage as datatrove tasks over shards of its input documents, then a one-task merge.

Each stage of a sharded run (`executor.tasks` > 1, or a Slurm/Ray executor) is two datatrove stages, run by
`curation.stages.run_stages` on the executor the config names (local, Slurm, Ray), `workers` at once:

1. `SynthesisShard` (tasks = `executor.tasks`): task `rank` takes the input documents whose id hashes to it
   (`synthetic.stage.shard_of`), and runs the stage's own run function on them (the same code a one-process run
   uses), with its own request cache (`requests-<rank>-of-<tasks>.sqlite`, keyed as always) and its own output
   folder (a hidden sibling of the stage folder) holding rows, drops and a manifest.
2. `MergeShards` (1 task): links every shard's Parquet files into the stage folder as `<rank>.parquet` (rows and
   decisions) and writes the stage's manifest: counts, drops and request totals summed over the shards, the
   per-shard manifests' ids recorded under `extra.shards`.

A killed task resumes alone: datatrove skips the tasks whose completion marker exists, and the redone task finds
its answered requests in its own cache, so only the requests it never committed are sent again. A stage whose
merge finished is redone in full on the next run (from the caches: nothing is re-sent), as a one-process run is.
Every choice is a hash of ids and every run-wide limit (`max_documents`) is applied before sharding, so a run with
any number of tasks writes the same rows as a one-task run (in another file order).

Why not datatrove's `InferenceRunner` (read in datatrove 0.10.1, installed): it drives only HTTP servers it starts
itself (vLLM/SGLang, its "custom" server a subprocess behind HTTP too), so neither the in-process CPU backend nor
the vLLM offline engine behind our `Backend` interface (which evals/ share) can run under it; its request cache
needs `aiosqlite` and its client `openai`, neither a dependency here, and replays by payload hash within a rank's
checkpoint chunks rather than by (task, prompt version, model, sampling, source id, sample); and our stages read
each other's artifacts and verify answers in a sandbox, which is plain code here rather than rollout callbacks.
What we take from datatrove is the part that fits: its executors, ranks, completions (resume) and stats.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.stages import Stage, run_stages
from nano2.contracts.shards import decisions_dir, shard_name
from nano2.errors import Nano2Error
from nano2.manifest import MANIFEST_NAME, ArtifactKind, Manifest, OutputStats, Stats, read_manifest, write_manifest
from synthetic.backends import Backend
from synthetic.config import SynthConfig
from synthetic.engine import run_stage_shard
from synthetic.records import SYNTHETIC_STAGE, _prepare_empty
from synthetic.stage import RequestStats

REQUEST_COUNTS = tuple(RequestStats().as_dict())


class SynthesisShard(PipelineStep):
    """One shard of one stage: the stage's run function over the input documents that hash to this rank."""

    name = "🧪 Synthesis shard"
    type = "🧪 - SYNTHESIS"

    def __init__(
        self, cfg: SynthConfig, config_path: str | None, stage: str, backend_factory: Callable[[], Backend] | None
    ):
        super().__init__()
        self.cfg, self.config_path, self.stage, self.backend_factory = cfg, config_path, stage, backend_factory

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        manifest = run_stage_shard(self.cfg, self.config_path, self.stage, rank, world_size, self.backend_factory)
        self.stat_update("rows", value=int(manifest.stats.documents or 0))
        for key, value in manifest.extra.get("requests", {}).items():
            self.stat_update(f"requests_{key}", value=int(value))
        if data:
            yield from data


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system: copy
        shutil.copyfile(source, target)


def _sum_stats(stats: list[OutputStats]) -> OutputStats:
    totals: Counter[str] = Counter()
    by: dict[str, dict[str, Counter[str]]] = {}
    for s in stats:
        totals.update({k: v for k, v in s.model_dump(include={"documents", "tokens", "bytes"}).items() if v})
        for group, values in s.by.items():
            for value, counts in values.items():
                by.setdefault(group, {}).setdefault(value, Counter()).update(
                    {k: v for k, v in counts.model_dump().items() if v}
                )
    merged_by = {g: {v: Stats(**c) for v, c in sorted(values.items())} for g, values in by.items()}
    return OutputStats(**{"documents": 0, "tokens": 0, "bytes": 0, **totals}, by=merged_by,
                       tokenizer=stats[0].tokenizer if stats else None)  # fmt: skip


def merge_stage(cfg: SynthConfig, stage: str, world_size: int) -> Manifest:
    """The stage folder from its shards' folders: files linked as `<rank>.parquet`, one manifest summing them."""
    shard_dirs = [cfg.shard_dir(stage, rank) for rank in range(world_size)]
    missing = [str(d) for d in shard_dirs if not (d / MANIFEST_NAME).exists()]
    if missing:
        raise Nano2Error(f"{stage}: {len(missing)} shard(s) have no manifest (e.g. {missing[0]}): rerun to finish them")
    manifests = [read_manifest(d) for d in shard_dirs]
    final = cfg.stage_dir(stage)
    _prepare_empty(final, (manifests[0].kind,))
    _prepare_empty(decisions_dir(final), (ArtifactKind.DECISIONS,))
    final.mkdir(parents=True)
    for rank, shard in enumerate(shard_dirs):
        for source in sorted(shard.rglob("*.parquet")):
            _link(source, final / source.relative_to(shard).parent / shard_name(rank))
        for source in sorted(decisions_dir(shard).rglob("*.parquet")) if decisions_dir(shard).exists() else []:
            _link(source, decisions_dir(final) / source.relative_to(decisions_dir(shard)).parent / shard_name(rank))
    drops: dict[str, Counter[str]] = {}
    requests: Counter[str] = Counter()
    for m in manifests:
        for task, reasons in m.extra.get("drops", {}).items():
            drops.setdefault(task, Counter()).update(reasons)
        requests.update(m.extra.get("requests", {}))
    first = manifests[0]
    shards = [{"rank": rank, "manifest_id": m.id, "rows": m.extra.get("rows", 0)} for rank, m in enumerate(manifests)]
    decided = [decisions_dir(d) for d in shard_dirs if (decisions_dir(d) / MANIFEST_NAME).exists()]
    decision_manifests = [read_manifest(d) for d in decided]
    common = {"command": first.producer.command, "config": first.producer.config,
              "config_path": first.producer.config_path, "inputs": first.inputs}  # fmt: skip
    if decision_manifests:
        d0 = decision_manifests[0]
        write_manifest(decisions_dir(final), kind=ArtifactKind.DECISIONS, name=d0.name, **common,
                       stats=_sum_stats([d.stats for d in decision_manifests]),
                       extra={**d0.extra, "decisions_of": str(final)})  # fmt: skip
    stats = _sum_stats([m.stats for m in manifests])
    extra: dict[str, Any] = {
        **first.extra,
        "requests": {k: int(requests.get(k, 0)) for k in REQUEST_COUNTS},
        "drops": {task: dict(sorted(r.items())) for task, r in sorted(drops.items())},
        "rows": sum(int(m.extra.get("rows", 0)) for m in manifests),
        "decisions": str(decisions_dir(final)) if decision_manifests else None,
        "shards": shards,
        SYNTHETIC_STAGE: stage,
    }
    return write_manifest(final, kind=first.kind, name=first.name, **common, stats=stats, extra=extra)


class MergeShards(PipelineStep):
    """One task after a stage's shards: the stage folder and its manifest (`merge_stage`)."""

    name = "🧩 Merge synthesis shards"
    type = "🧪 - SYNTHESIS"

    def __init__(self, cfg: SynthConfig, stage: str, world_size: int):
        super().__init__()
        self.cfg, self.stage, self.world_size = cfg, stage, world_size

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        manifest = merge_stage(self.cfg, self.stage, self.world_size)
        self.stat_update("rows", value=int(manifest.stats.documents or 0))
        if data:
            yield from data


def stage_done(cfg: SynthConfig, stage: str) -> bool:
    """Whether the stage's last datatrove stage (the merge; the one shard of a one-task run) completed."""
    last = "merge" if cfg.executor.tasks > 1 else "shards"
    logs = cfg.shard_logs(stage) / last / "completions"
    return logs.is_dir() and any(logs.iterdir())


def run_sharded(
    cfg: SynthConfig,
    config_path: str | None,
    stages: list[str],
    backend_factory: Callable[[], Backend] | None = None,
) -> bool:
    """Run `stages` as shard + merge stages on the configured executor; True when they finished here, False when
    they were submitted to Slurm (the manifests appear when the jobs finish)."""
    world = cfg.executor.tasks
    chain: list[Stage] = []
    for stage in stages:
        if stage_done(cfg, stage):  # a finished stage is redone in full (from the caches), as a one-task run is
            shutil.rmtree(cfg.shard_logs(stage), ignore_errors=True)
        shard = SynthesisShard(cfg, config_path, stage, backend_factory)
        chain.append(Stage(f"{stage}-shards", [shard], cfg.shard_logs(stage) / "shards"))
        if world > 1:  # one task writes the stage folder itself
            chain.append(
                Stage(f"{stage}-merge", [MergeShards(cfg, stage, world)], cfg.shard_logs(stage) / "merge", tasks=1)
            )
    return run_stages(chain, cfg.executor)
