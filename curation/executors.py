"""Executors for curation pipelines, chosen in the config: datatrove's local, Slurm or Ray executor.

Resume is datatrove's: a task whose completion marker exists in `logging_dir/completions/` is skipped on rerun, so
a killed run restarted with the same config redoes only unfinished tasks (and writers name files by rank, so a
redone task overwrites its own partial output). Ray needs the `ray` extra and a running cluster (`ray.init()`);
Slurm needs `sbatch` on the machine.
"""

from __future__ import annotations

import functools
import json
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nano2.errors import Nano2Error


class SlurmOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partition: str
    time: str = "10:00:00"
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    qos: str = "normal"
    job_name: str = "nano2-curation"
    venv_path: str | None = None
    sbatch_args: dict[str, Any] = Field(default_factory=dict)


class RayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str | None = Field(default=None, description="cluster to join; None starts a local one")
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2
    time: int | None = None


class ExecutorConfig(BaseModel):
    """How to run a pipeline: `local` (default), `slurm` or `ray`, with `tasks` shards and `workers` in parallel."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int = Field(default=1, gt=0)
    workers: int = Field(default=1, description="tasks run at once (-1 = all)")
    slurm: SlurmOptions | None = None
    ray: RayOptions | None = None


def _fast_distribution_check() -> None:
    """Make datatrove's dependency check of every step cheap, with the same answers.

    Each `PipelineStep` checks its `_requires_dependencies` when it is built (and when it is unpickled or copied),
    and datatrove answers "is distribution X installed" by parsing the metadata of every installed distribution,
    once per name: 0.3-0.6 s of CPU in every pipeline. Here a name is first looked up directly (one metadata
    file); only when that lookup does not confirm it does datatrove's full scan decide, so the answer is always
    the scan's."""
    from datatrove.utils import _import_utils

    scan = _import_utils._is_distribution_available
    if getattr(scan, "nano2_fast", False):
        return

    @functools.lru_cache
    def is_distribution_available(distribution_name: str):
        try:
            name = metadata.distribution(distribution_name).metadata.get("Name")
        except (metadata.PackageNotFoundError, ValueError):
            name = None
        if name and name.lower() == distribution_name:
            return True
        return scan(distribution_name)

    is_distribution_available.nano2_fast = True
    _import_utils._is_distribution_available = is_distribution_available


_fast_distribution_check()


def make_executor(pipeline: list, cfg: ExecutorConfig, logging_dir: str | Path, depends=None):
    """A datatrove executor for `pipeline` as the config says."""
    logging_dir = str(logging_dir)
    if cfg.kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(
            pipeline, tasks=cfg.tasks, workers=cfg.workers, logging_dir=logging_dir, depends=depends,
            start_method="fork" if cfg.workers != 1 else "forkserver",
        )  # fmt: skip
    if cfg.kind == "slurm":
        if cfg.slurm is None:
            raise Nano2Error("executor.slurm: required when executor.kind is slurm (at least a partition)")
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(
            pipeline, tasks=cfg.tasks, workers=cfg.workers, logging_dir=logging_dir, depends=depends,
            **cfg.slurm.model_dump(),
        )  # fmt: skip
    try:
        import ray
    except ImportError:
        raise Nano2Error("executor.kind ray needs the `ray` extra: pip install 'nano2-recipe[ray]'") from None
    from datatrove.executor import RayPipelineExecutor

    opts = cfg.ray or RayOptions()
    if not ray.is_initialized():
        ray.init(address=opts.address, include_dashboard=False, ignore_reinit_error=True)
    return RayPipelineExecutor(
        pipeline, tasks=cfg.tasks, workers=cfg.workers, logging_dir=logging_dir, depends=depends,
        cpus_per_task=opts.cpus_per_task, mem_per_cpu_gb=opts.mem_per_cpu_gb, time=opts.time,
    )  # fmt: skip


def read_step_stats(logging_dir: str | Path) -> list[dict[str, Any]]:
    """Per-step counters of a finished run, from datatrove's merged `stats.json` (or the per-rank files).

    Returns one dict per step: {"step": name, "stats": {counter: total}}; counters include `total`, `forwarded`,
    `dropped`, `dropped_<reason>` and document/token statistics where the step records them.
    """
    logging_dir = Path(logging_dir)
    merged = logging_dir / "stats.json"
    files = [merged] if merged.exists() else sorted((logging_dir / "stats").glob("*.json"))
    if not files:
        raise Nano2Error(f"{logging_dir}: no datatrove stats (stats.json or stats/*.json): did the run finish?")
    steps: list[dict[str, Any]] = []
    for f in files:
        for i, step in enumerate(json.loads(f.read_text())):
            name = next(iter(step)) if isinstance(step, dict) and len(step) == 1 else step.get("name", f"step{i}")
            body = step[name] if isinstance(step, dict) and name in step else step.get("stats", {})
            counters = {k: _total(v) for k, v in body.items()}
            if i < len(steps):
                for k, v in counters.items():
                    steps[i]["stats"][k] = steps[i]["stats"].get(k, 0) + v
            else:
                steps.append({"step": name, "stats": counters})
    return steps


def _total(value: Any) -> float:
    if isinstance(value, dict):
        return value.get("total", value.get("n", 0))
    return value
