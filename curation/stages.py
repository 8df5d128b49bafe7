"""The one stage runner of curation pipelines: a pipeline is a list of datatrove executors run in order.

Each stage is its own executor with its own logging dir, so a rerun of the same config skips the tasks that
completed (datatrove's resume). Local and Ray executors block, stage after stage; Slurm stages are submitted as
one `depends` chain and the call returns at once (the manifests are written by a later local call).

Locally, two things keep the fixed cost of a stage down (they change where a task runs, never what it does: the
task count, and with it every rank's shard, stays as configured):
- a stage that names the working folders it reads (`Stage.reads`) and finds less than `SERIAL_BELOW_BYTES` there
  runs its tasks one after another in the driver: a pool of forked workers, each loading its own models and
  modules, costs more CPU than such a stage's work;
- before a stage starts, every step with a `warm()` method loads what it shares across tasks (models, tokenizers,
  lookup tables) into process-wide caches in the driver, so forked workers inherit them instead of each task
  loading its own copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.executors import ExecutorConfig, make_executor


@dataclass(frozen=True)
class Stage:
    """One datatrove executor run: its steps, where it logs, and how many tasks (None: as the config says)."""

    name: str
    pipeline: list
    logging_dir: Path
    tasks: int | None = None
    reads: tuple[Path, ...] = ()  # working folders an earlier stage wrote: their size decides `serial_locally`


# A local stage reading less than this (compressed working files) runs its tasks in the driver, one after another:
# at ~2 ms of CPU per document, 4 MiB of gzipped JSONL (~2,500 web pages) is a few seconds of work, while a pool
# costs its workers' start, imports and model loads in every stage.
SERIAL_BELOW_BYTES = 4 << 20


def folder_bytes(folders: tuple[Path, ...] | list[Path]) -> int:
    """Bytes of the files under `folders` (missing folders count 0)."""
    total = 0
    for folder in folders:
        for root, _, files in os.walk(folder):
            total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def serial_locally(stage: Stage) -> bool:
    """Whether a local stage is small enough to run its tasks in the driver (see `SERIAL_BELOW_BYTES`)."""
    return bool(stage.reads) and folder_bytes(stage.reads) < SERIAL_BELOW_BYTES


def stage_executor_config(base: ExecutorConfig, tasks: int | None, serial: bool = False) -> ExecutorConfig:
    """The executor config of a stage: a fixed task count (1 for a gather step) never gets more workers than tasks;
    `serial` (a small local stage) runs one task at a time in the driver."""
    update: dict[str, int] = {}
    if tasks is not None:
        update = {"tasks": tasks, "workers": min(tasks, max(base.workers, 1))}
    if serial and base.kind == "local":
        update["workers"] = 1
    return base.model_copy(update=update) if update else base


def warm_steps(pipeline: list) -> None:
    """Load what the steps share across tasks into process-wide caches (`warm()`), before a local stage forks."""
    for step in pipeline:
        warm = getattr(step, "warm", None)
        if callable(warm):
            warm()


StageStarted = Callable[[int, int, Stage], None]  # (index, number of stages, stage)
StageLauncher = Callable[[Stage, Callable[[], Any]], None]  # runs `launch()` for a stage (e.g. with quiet logs)


def run_stages(
    stages: list[Stage],
    executor: ExecutorConfig,
    *,
    on_stage: StageStarted | None = None,
    run_stage: StageLauncher | None = None,
) -> bool:
    """Run `stages` in order; True when they ran to completion here, False when they were submitted to Slurm."""
    if executor.kind == "slurm":
        previous = None
        for stage in stages:
            previous = make_executor(
                stage.pipeline, stage_executor_config(executor, stage.tasks), stage.logging_dir, depends=previous
            )
        if previous is not None:
            previous.run()  # submitting the last stage submits the whole `depends` chain
        return False
    for index, stage in enumerate(stages):
        if on_stage is not None:
            on_stage(index, len(stages), stage)
        if executor.kind == "local":
            warm_steps(stage.pipeline)
        serial = executor.kind == "local" and serial_locally(stage)
        runner = make_executor(stage.pipeline, stage_executor_config(executor, stage.tasks, serial), stage.logging_dir)
        if run_stage is not None:
            run_stage(stage, runner.run)
        else:
            runner.run()
    return True
