"""`nano2 curate code CONFIG`: run the permissive-license code pipeline with progress and a summary."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from nano2.errors import Nano2Error

if TYPE_CHECKING:
    from curation.stages import Stage


def register(app: typer.Typer) -> None:
    """Add the `code` command to the `nano2 curate` app."""

    @app.command("code")
    def code(
        config: Path = typer.Argument(..., help="Pipeline config, e.g. curation/configs/code-tiny.yaml."),
        fresh: bool = typer.Option(False, "--fresh", help="Delete this pipeline's previous output and work dir."),
        manifest_only: bool = typer.Option(
            False, "--manifest-only", help="Only (re)write the manifest of a finished run (e.g. after Slurm jobs)."
        ),
    ) -> None:
        """Curate permissive-license code: ScanCode license stage, code filters, exact + MinHash dedup."""
        from curation.code.config import load_code_config
        from curation.code.pipeline import clear_previous_run, run_pipeline, write_code_manifest
        from nano2.console import make_console

        cfg = load_code_config(config)
        console = make_console()
        if manifest_only:
            _print_summary(console, write_code_manifest(cfg, config))
            return
        if fresh:
            clear_previous_run(cfg)
        started = time.monotonic()
        with _StageProgress(console, cfg.executor.tasks) as progress:
            manifest = run_pipeline(cfg, config, on_stage=progress.start, run_stage=progress.run)
        if manifest is None:
            console.print(
                f"submitted the stages to Slurm (logs under {cfg.resolved_work_dir() / 'logs'}); when they finish, "
                f"run `nano2 curate code {config} --manifest-only`"
            )
            return
        console.print(f"[bold]done[/] in {time.monotonic() - started:.0f}s: {cfg.output_dir}")
        _print_summary(console, manifest)


class _StageProgress:
    """A rich progress line per stage; datatrove's console logging goes to a file beside the stage's logs."""

    def __init__(self, console, default_tasks: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=False,
        )  # fmt: skip
        self.task_id = None
        self.default_tasks = default_tasks

    def __enter__(self) -> _StageProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start(self, index: int, total: int, stage: Stage) -> None:
        if self.task_id is None:
            self.task_id = self.progress.add_task("stages", total=total)
        tasks = stage.tasks or self.default_tasks
        self.progress.update(self.task_id, completed=index, description=f"{stage.name} ({tasks} tasks)")

    def run(self, stage: Stage, launch: Callable[[], Any]) -> None:
        from loguru import logger

        log_path = Path(stage.logging_dir) / "console.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(log_path, "a", encoding="utf-8") as log, contextlib.redirect_stderr(log):
                launch()
        except Exception as exc:
            raise Nano2Error(
                f"stage {stage.name} failed ({type(exc).__name__}: {exc}); see {log_path} and {stage.logging_dir}/logs"
            ) from exc
        finally:
            logger.remove()
            logger.add(sys.stderr, level="WARNING")
        self.progress.advance(self.task_id)


def _print_summary(console, manifest) -> None:
    from rich.table import Table

    from curation.code.pipeline import step_drops
    from nano2.contracts.documents import Meta

    stats = manifest.stats
    console.print(f"kept {stats.documents or 0:,} files, {stats.tokens or 0:,} tokens -> manifest {manifest.id}")
    by_license = stats.by.get(Meta.LICENSE_SPDX, {})
    if by_license:
        table = Table(title="kept by license (SPDX)", title_justify="left")
        for col in ("license", "files", "tokens"):
            table.add_column(col, justify="left" if col == "license" else "right")
        for value, s in sorted(by_license.items(), key=lambda kv: -(kv[1].tokens or 0)):
            table.add_row(value, f"{s.documents or 0:,}", f"{s.tokens or 0:,}")
        console.print(table)
    drops = step_drops(manifest)
    if drops:
        table = Table(title="dropped by step and reason", title_justify="left")
        for col in ("step", "reason", "files"):
            table.add_column(col, justify="right" if col == "files" else "left")
        for step, reasons in drops.items():
            for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
                table.add_row(step, reason, f"{count:,}")
        console.print(table)
