"""The synthesis run: the shared driver that sends every stage's requests through the cache and calls the stages.

Why not datatrove's `InferenceRunner`: it was read and does not fit cleanly. (1) It talks to engines only over
HTTP, spawning vLLM/SGLang servers itself (its "custom" server is a subprocess behind HTTP too), so neither the
in-process CPU backend nor the vLLM offline engine behind our `Backend` interface (which evals/ share) can drive
it. (2) Its request cache needs `aiosqlite` and its endpoint client `openai`, neither installed, and its replay is
keyed by payload hash within a rank's checkpoint chunks, not by (task, prompt version, model, params, source id,
sample). (3) Our stages depend on each other's artifacts (translate reads DiverseQA documents, truncate reads
verified traces), and verification runs subprocesses: a plain loop is clearer than rollout callbacks. So this is a
plain, resumable runner in datatrove's spirit: generators, small steps, every drop counted with a reason.

How a stage runs (its run function lives with its task, `synthetic/tasks/<task>.py`): a generator of `Job`s (one
request each, built from input documents) is cut into batches; per batch, answered keys come from the cache, the
rest go to the backend (built lazily: a fully cached rerun never loads a model), and answers are committed before
anything is parsed. Each answer is parsed/verified into a row or a drop. Rows are written in input order and every
choice is a hash of ids, so a killed run resumed later writes exactly the rows an uninterrupted run writes,
re-sending only requests that were never committed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nano2.contracts.shards import run_data_folder
from nano2.errors import Nano2Error
from nano2.manifest import Manifest, read_manifest
from synthetic.backends import Backend, make_backend
from synthetic.cache import RequestCache
from synthetic.config import SynthConfig
from synthetic.engine import STAGE_RUNNERS, Generator, model_identity
from synthetic.stage import RequestStats, StageContext
from synthetic.tokens import token_counter

__all__ = ["STAGE_RUNNERS", "Generator", "RunResult", "model_identity", "run_synthesis"]


def check_chat_root(cfg: SynthConfig) -> None:
    """Refuse a chat root inside a run's `data` folder: the run's one-schema scan of documents would meet chat rows."""
    if run_data_folder(cfg.chat_root) is not None:
        raise Nano2Error(
            f"chat_dir {cfg.chat_dir} is inside a run's data folder, which holds documents only; "
            "leave chat_dir unset (RUN/chat/synthetic) or put it outside RUN/data"
        )


@dataclass
class RunResult:
    manifests: dict[str, Manifest]
    requests: RequestStats
    drops: dict[str, dict[str, int]] = field(default_factory=dict)
    submitted: bool = False  # sent to Slurm: the manifests appear when the jobs finish


def run_synthesis(
    cfg: SynthConfig,
    config_path: str | Path | None = None,
    stages: Iterable[str] | None = None,
    backend_factory: Callable[[], Backend] | None = None,
    on_batch: Callable[[str, RequestStats], None] | None = None,
) -> RunResult:
    """Run the enabled stages (or the given ones) in order; returns each stage's manifest and the request counts."""
    chosen = list(stages) if stages else cfg.enabled_stages()
    unknown = [s for s in chosen if s not in STAGE_RUNNERS]
    if unknown:
        raise Nano2Error(f"unknown stage {unknown[0]!r}; expected some of {', '.join(STAGE_RUNNERS)}")
    disabled = [s for s in chosen if not getattr(cfg, s).enabled]
    if disabled:
        raise Nano2Error(f"stage {disabled[0]!r} is not enabled in the config")
    check_chat_root(cfg)
    ordered = [s for s in STAGE_RUNNERS if s in chosen]
    if cfg.executor.tasks > 1 or cfg.executor.kind != "local":
        return _run_sharded(cfg, config_path, ordered, backend_factory)
    counter = token_counter(cfg.tokenizer)
    model = model_identity(cfg.backend)
    cache = RequestCache(cfg.cache_path)
    current = {"stage": ""}
    generator = Generator(
        backend_factory or (lambda: make_backend(cfg.backend)),
        cache,
        model,
        cfg.batch_size,
        retry_failed=cfg.retry_failed,
        on_batch=(lambda stats: on_batch(current["stage"], stats)) if on_batch else None,
    )
    ctx = StageContext(cfg, str(config_path) if config_path else None, counter, generator)
    manifests: dict[str, Manifest] = {}
    drops: dict[str, Counter[str]] = {}
    try:
        for stage in ordered:
            current["stage"] = stage
            manifests[stage] = STAGE_RUNNERS[stage](ctx)
            for task, reasons in manifests[stage].extra.get("drops", {}).items():
                drops.setdefault(task, Counter()).update(reasons)
    finally:
        generator.close()
        cache.close()
    return RunResult(manifests, generator.stats, {t: dict(r) for t, r in drops.items()})


def _run_sharded(
    cfg: SynthConfig, config_path: str | Path | None, stages: list[str], backend_factory: Callable[[], Backend] | None
) -> RunResult:
    """The stages as datatrove tasks (`synthetic.shards`); the result is read back from the merged manifests."""
    from synthetic.shards import run_sharded

    model_identity(cfg.backend)  # a missing local checkpoint fails here, before any task starts
    from synthetic.shards import stage_done

    finished = run_sharded(cfg, str(config_path) if config_path else None, stages, backend_factory)
    if not finished and not all(stage_done(cfg, stage) for stage in stages):
        return RunResult({}, RequestStats(), submitted=True)  # the jobs are queued: manifests come when they end
    manifests = {stage: read_manifest(cfg.stage_dir(stage)) for stage in stages}
    requests: Counter[str] = Counter()
    drops: dict[str, Counter[str]] = {}
    for manifest in manifests.values():
        requests.update(manifest.extra.get("requests", {}))
        for task, reasons in manifest.extra.get("drops", {}).items():
            drops.setdefault(task, Counter()).update(reasons)
    totals = RequestStats(**{k: int(requests.get(k, 0)) for k in RequestStats().as_dict()})
    return RunResult(manifests, totals, {t: dict(r) for t, r in drops.items()})
