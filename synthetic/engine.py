"""The request path every synthesis run shares: the stage registry, the model identity in cache keys, the cached,
batched `Generator`, and one shard of one stage (`run_stage_shard`). `synthetic.runner` drives it in one process,
`synthetic.shards` as datatrove tasks; both import it, neither imports the other's driver.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

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
