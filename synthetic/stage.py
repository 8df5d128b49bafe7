"""What a stage's run function works with: jobs (one request each), the stage context, and the stage's output.

Each task module owns its stage (`synthetic/tasks/<task>.py`: `run_<stage>(ctx) -> Manifest`): it builds `Job`s
from its inputs, sends them through `ctx.generator` (the runner's cached, batched request path), parses every answer
with its own parser, and writes a row or a counted drop to the output `ctx` opens for it. The runner only builds the
context and calls the enabled stages in order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nano2.contracts.documents import Meta
from nano2.manifest import InputRef, Manifest, input_ref
from synthetic.backends import GenerationResponse, Sampling
from synthetic.config import GenerationSettings, SynthConfig
from synthetic.inputs import SourceDoc
from synthetic.prompting import Prompt
from synthetic.records import ChatOutput, DocumentOutput, PreferenceOutput, StageOutput
from synthetic.tokens import TokenCounter

CARRIED_METADATA = (Meta.URL, Meta.DATE, Meta.LANGUAGE, Meta.LEVEL)
"""Metadata a generated document keeps from the document it was generated from (text-valued fields)."""


@dataclass
class Job:
    """One request and everything needed to turn its answer into a row."""

    task: str
    source_id: str
    sample_index: int
    prompt: Prompt
    messages: list[dict[str, str]]
    sampling: Sampling
    thinking: bool | None
    payload: dict[str, Any] = field(default_factory=dict)

    def key_fields(self, model: str) -> dict[str, Any]:
        """What the request cache key hashes (`synthetic.cache.request_key`)."""
        return {
            "task": self.task,
            "prompt_version": self.prompt.tag,
            "prompt_hash": self.prompt.text_hash,
            "model": model,
            "sampling": self.sampling.to_dict(),
            "source_id": self.source_id,
            "sample_index": self.sample_index,
        }

    def document_metadata(self, model: str) -> dict[str, Any]:
        """The provenance every generated document records: task, prompt version, model and sampling."""
        return {
            Meta.TASK: self.task,
            Meta.PROMPT_VERSION: self.prompt.tag,
            Meta.MODEL: model,
            Meta.SAMPLING: json.dumps(self.sampling.to_dict(), sort_keys=True),
        }


@dataclass
class RequestStats:
    jobs: int = 0
    cached: int = 0
    sent: int = 0
    failed: int = 0
    skipped_failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class JobGenerator(Protocol):
    """The request path a stage sends its jobs through: answers in job order, each one cached before it is used."""

    model: str
    stats: RequestStats

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, GenerationResponse]]: ...


def job_sampling(settings: GenerationSettings, seed: int, sample_index: int) -> Sampling:
    """Sampling of one sample: sample i of a prompt uses seed + i."""
    return Sampling(
        max_tokens=settings.max_output_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=seed + sample_index,
        n=1,
    )


def carried_metadata(source: Mapping[str, Any]) -> dict[str, Any]:
    """The `CARRIED_METADATA` of a source document (as text; absent ones stay absent)."""
    return {key: str(source[key]) for key in CARRIED_METADATA if source.get(key) is not None}


def shard_of(key: str, world_size: int) -> int:
    """The shard an input document belongs to: a hash of its id (the same on every worker and every rerun)."""
    if world_size == 1:
        return 0
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % world_size


@dataclass
class StageContext:
    """What every stage gets: the config, the counting tokenizer, the request path, and its shard of the input
    (`rank` of `world_size`: a stage handles only the input documents `in_shard` accepts)."""

    cfg: SynthConfig
    config_path: str | None
    counter: TokenCounter
    generator: JobGenerator
    rank: int = 0
    world_size: int = 1

    def in_shard(self, key: str) -> bool:
        """Whether the input document with this id is this shard's to send, write and drop."""
        return shard_of(key, self.world_size) == self.rank

    def output_dir(self, stage: str) -> Path:
        """The stage folder, or this shard's folder before the merge when the stage runs in several shards."""
        return self.cfg.stage_dir(stage) if self.world_size == 1 else self.cfg.shard_dir(stage, self.rank)

    @property
    def model(self) -> str:
        return self.generator.model

    def snapshot(self) -> RequestStats:
        """The request counts so far (a stage's manifest records the difference at its end)."""
        return RequestStats(**self.generator.stats.as_dict())

    def documents(self, stage: str) -> DocumentOutput:
        return DocumentOutput(self.output_dir(stage), stage, self.counter)

    def chat(self, stage: str) -> ChatOutput:
        return ChatOutput(self.output_dir(stage), stage, self.counter)

    def preferences(self, stage: str) -> PreferenceOutput:
        return PreferenceOutput(self.output_dir(stage), stage, self.counter)

    def finish(
        self, out: StageOutput, stage: str, inputs: list[InputRef], before: RequestStats, **extra: Any
    ) -> Manifest:
        """Close a stage's output with its manifest: inputs, the requests this stage made, backend and seed."""
        now = self.generator.stats.as_dict()
        requests = {k: now[k] - v for k, v in before.as_dict().items()}
        return out.close(
            name=f"{self.cfg.name}-{stage}",
            config=self.cfg,
            config_path=self.config_path,
            inputs=inputs,
            extra={
                "requests": requests,
                "backend": {"kind": self.cfg.backend.kind, "model": self.model},
                "seed": self.cfg.seed,
                "tokenizer": self.cfg.tokenizer,
                **extra,
            },
        )


def unique(docs: Iterable[SourceDoc]) -> Iterator[SourceDoc]:
    """Each document id once (an id seen again, e.g. from overlapping inputs, is skipped)."""
    seen: set[str] = set()
    for doc in docs:
        if doc.id not in seen:
            seen.add(doc.id)
            yield doc


def input_refs(paths: Iterable[str | Path]) -> list[InputRef]:
    """Manifest input references of the given paths, each once, in first-seen order."""
    return [input_ref(p) for p in dict.fromkeys(str(p) for p in paths)]
