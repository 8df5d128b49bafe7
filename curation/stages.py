"""The one stage runner of curation pipelines: a pipeline is a list of datatrove executors run in order.

Each stage is its own executor with its own logging dir, so a rerun of the same config skips the tasks that
completed (datatrove's resume). Local and Ray executors block, stage after stage; Slurm stages are submitted as
one `depends` chain and the call returns at once (the manifests are written by a later local call).
"""

from __future__ import annotations

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


def stage_executor_config(base: ExecutorConfig, tasks: int | None) -> ExecutorConfig:
    """The executor config of a stage: a fixed task count (1 for a gather step) never gets more workers than tasks."""
    if tasks is None:
        return base
    return base.model_copy(update={"tasks": tasks, "workers": min(tasks, max(base.workers, 1))})


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
        runner = make_executor(stage.pipeline, stage_executor_config(executor, stage.tasks), stage.logging_dir)
        if run_stage is not None:
            run_stage(stage, runner.run)
        else:
            runner.run()
    return True
