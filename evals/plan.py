"""The plan of a run: every (task, sampling) pair with the settings hash that keys its samples.

The hash covers the model identity, the exact prompt and the sampling settings (not `n`), so a rerun reuses every
sample it already has, raising `n` only adds samples, and a changed prompt or model never reuses old ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from evals.config import BenchmarkConfig, EvalConfig, SamplingConfig
from evals.tasks import Task, load_tasks
from synthetic.backends import BackendConfig, GenerationRequest, Sampling


@dataclass(frozen=True)
class PlannedItem:
    """One task with its resolved sampling and settings hash: what to ask, and the key of each sample."""

    task: Task
    spec: BenchmarkConfig
    sampling: SamplingConfig
    settings: str  # hash of model identity + prompt + sampling

    def key(self, sample: int) -> tuple[str, str, int, str]:
        return (self.task.family, self.task.item_id, sample, self.settings)

    def request(self, key: str, first: int, count: int) -> GenerationRequest:
        s = self.sampling
        completion = self.spec.prompt == "completion"
        sampling = Sampling(
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed + first,
            stop=self.task.stop if completion else (),
            n=count,
        )
        if completion:
            return GenerationRequest(key=key, prompt=self.task.prompt, sampling=sampling)
        return GenerationRequest(
            key=key, messages=tuple(dict(m) for m in self.task.messages), sampling=sampling, thinking=s.thinking
        )


def model_identity(backend: BackendConfig) -> str:
    """What identifies the weights in sample keys: the checkpoint's manifest id when it has one, else its name."""
    path = Path(backend.model)
    if backend.kind == "local" or path.is_dir():
        from nano2.manifest import MANIFEST_NAME, read_manifest

        if (path / MANIFEST_NAME).is_file():
            return f"{backend.kind}:{read_manifest(path).id}"
        return f"{backend.kind}:{path.resolve()}"
    return f"{backend.kind}:{backend.model}"


def settings_hash(identity: str, task: Task, style: str, sampling: SamplingConfig) -> str:
    payload = {
        "model": identity,
        "style": style,
        "input": task.prompt if style == "completion" else [dict(m) for m in task.messages],
        "stop": list(task.stop) if style == "completion" else [],
        "sampling": sampling.model_dump(exclude={"n"}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def plan_run(cfg: EvalConfig, identity: str) -> list[PlannedItem]:
    planned = []
    for spec in cfg.benchmarks:
        sampling = spec.sampling.apply(cfg.sampling)
        for task in load_tasks(spec, cfg.data_dir):
            planned.append(PlannedItem(task, spec, sampling, settings_hash(identity, task, spec.prompt, sampling)))
    return planned
