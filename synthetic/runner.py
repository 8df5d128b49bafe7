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

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nano2.contracts.shards import run_data_folder
from nano2.errors import Nano2Error
from nano2.manifest import MANIFEST_NAME, Manifest, content_hash, read_manifest
from synthetic.backends import Backend, BackendConfig, GenerationRequest, GenerationResponse, make_backend
from synthetic.cache import RequestCache, request_key
from synthetic.config import SynthConfig
from synthetic.stage import Job, RequestStats, StageContext
from synthetic.tasks.long_context import run_long_context
from synthetic.tasks.preference import run_preference
from synthetic.tasks.reasoning_run import run_reasoning
from synthetic.tasks.rephrase import run_rephrase
from synthetic.tasks.translate import run_translate
from synthetic.tasks.truncate import run_truncate
from synthetic.tokens import token_counter

STAGE_RUNNERS: dict[str, Callable[[StageContext], Manifest]] = {
    "rephrase": run_rephrase,
    "translate": run_translate,
    "reasoning": run_reasoning,
    "preference": run_preference,
    "truncate": run_truncate,
    "long_context": run_long_context,
}
"""Every stage in the order it runs (translate reads rephrase, truncate reads reasoning)."""


def model_identity(cfg: BackendConfig) -> str:
    """What names the weights in cache keys and rows: a local checkpoint by its manifest id (retraining the teacher
    at the same path must not reuse answers), a served or hub model by its name."""
    if cfg.kind != "local":
        return cfg.model
    path = Path(cfg.model)
    if (path / MANIFEST_NAME).exists():
        return f"{path.name}@{read_manifest(path).id}"
    if not path.is_dir():
        raise Nano2Error(
            f"backend.model {path}: local checkpoint directory not found (the tiny recipe fine-tunes its format "
            "teacher there from `nano2 synth teacher-data` rows)"
        )
    return f"{path.name}@{content_hash(path)[:20]}"


def _batches(items: Iterable[Job], size: int) -> Iterator[list[Job]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


class Generator:
    """Send jobs through the cache and the (lazily built) backend, batch by batch (a stage's `JobGenerator`)."""

    def __init__(
        self,
        backend_factory: Callable[[], Backend],
        cache: RequestCache,
        model: str,
        batch_size: int,
        retry_failed: bool = True,
        on_batch: Callable[[RequestStats], None] | None = None,
    ):
        self._factory = backend_factory
        self._backend: Backend | None = None
        self.cache = cache
        self.model = model
        self.batch_size = batch_size
        self.retry_failed = retry_failed
        self.on_batch = on_batch
        self.stats = RequestStats()

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self._factory()
        return self._backend

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, GenerationResponse]]:
        for batch in _batches(jobs, self.batch_size):
            fields = [job.key_fields(self.model) for job in batch]
            keys = [request_key(**f) for f in fields]
            answers = self.cache.get_many(keys)
            self.stats.cached += sum(1 for k in keys if k in answers)
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # a repeated request is sent once
            missing = [i for i, k in enumerate(keys) if k not in answers and first[k] == i]
            if missing and not self.retry_failed:
                earlier = self.cache.failed_keys([keys[i] for i in missing])
                for i in [i for i in missing if keys[i] in earlier]:
                    answers[keys[i]] = GenerationResponse(key=keys[i], texts=[], error=earlier[keys[i]], attempts=0)
                    self.stats.skipped_failed += 1
                missing = [i for i in missing if keys[i] not in earlier]
            self.stats.jobs += len(batch)
            if missing:
                requests = [
                    GenerationRequest(
                        key=keys[i],
                        messages=tuple(batch[i].messages),
                        sampling=batch[i].sampling,
                        thinking=batch[i].thinking,
                    )
                    for i in missing
                ]
                responses = self.backend.generate(requests)
                if len(responses) != len(requests) or [r.key for r in responses] != [r.key for r in requests]:
                    name = self.backend.name
                    raise Nano2Error(f"backend {name}: {len(responses)} answers to {len(requests)} requests")
                self.cache.store((fields[i], r) for i, r in zip(missing, responses, strict=True))
                for r in responses:
                    answers[r.key] = r
                    self.stats.sent += 1
                    self.stats.failed += 0 if r.ok else 1
                    self.stats.prompt_tokens += r.prompt_tokens
                    self.stats.completion_tokens += sum(r.completion_tokens)
            if self.on_batch is not None:
                self.on_batch(self.stats)
            for job, key in zip(batch, keys, strict=True):
                yield job, answers[key]

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


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


def run_stage_shard(
    cfg: SynthConfig,
    config_path: str | None,
    stage: str,
    rank: int,
    world_size: int,
    backend_factory: Callable[[], Backend] | None = None,
) -> Manifest:
    """One shard of one stage (a datatrove task of `synthetic.shards`): its own request cache and output folder."""
    counter = token_counter(cfg.tokenizer)
    cache = RequestCache(cfg.shard_cache_path(rank, world_size))
    generator = Generator(backend_factory or (lambda: make_backend(cfg.backend)), cache, model_identity(cfg.backend),
                          cfg.batch_size, retry_failed=cfg.retry_failed)  # fmt: skip
    ctx = StageContext(cfg, config_path, counter, generator, rank=rank, world_size=world_size)
    try:
        return STAGE_RUNNERS[stage](ctx)
    finally:
        generator.close()
        cache.close()


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
