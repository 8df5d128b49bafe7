"""`nano2 curate web CONFIG`: run the Nemotron-CC web pipeline and print what it kept and dropped."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("web")
    def web(
        config: Path = typer.Argument(..., help="Web pipeline config (curation/configs/web-tiny.yaml)."),
        fresh: bool = typer.Option(False, "--fresh", help="Delete previous outputs and state instead of resuming."),
        thresholds: Path | None = typer.Option(
            None,
            "--thresholds",
            help="Level with these saved quality thresholds (a run's thresholds.json or web/ "
            "manifest) instead of fitting new ones: a new crawl segment on the first run's scale.",
        ),
    ) -> None:
        """Common Crawl -> text -> language ID -> filters -> exact + fuzzy dedup -> quality buckets -> Parquet."""
        from rich.table import Table

        from curation.web.config import load_web_config
        from curation.web.pipeline import run_web
        from nano2.console import make_console
        from nano2.contracts.documents import Meta
        from nano2.manifest import read_manifest

        cfg = load_web_config(config)
        console = make_console()
        with console.status(f"running {cfg.name} ({cfg.executor.kind}, {cfg.executor.tasks} tasks)"):
            artifacts = run_web(cfg, config, fresh=fresh, thresholds=thresholds)
        if not artifacts:
            console.print(f"submitted {cfg.name} to {cfg.executor.kind}; manifests are written by a local rerun")
            return
        table = Table(title=f"{cfg.name}: curated artifacts", title_justify="left")
        for col in ("artifact", "documents", "tokens", "by"):
            table.add_column(col, justify="right" if col in ("documents", "tokens") else "left")
        empty: dict[str, str] = {}
        for directory in artifacts.values():
            m = read_manifest(directory)
            if not m.stats.documents and m.extra.get("empty_reason"):
                empty[str(directory)] = m.extra["empty_reason"]
            groups = "; ".join(
                f"{key}: " + ", ".join(f"{v}={s.documents}" for v, s in values.items())
                for key, values in m.stats.by.items()
                if key != Meta.BUCKET
            )
            table.add_row(str(directory), f"{m.stats.documents or 0:,}", f"{m.stats.tokens or 0:,}", groups)
        console.print(table)
        for directory, reason in empty.items():
            console.print(f"{directory}: empty: {reason}")
        documents_and_decisions = os.path.commonpath([cfg.output.absolute(), artifacts["decisions"].absolute()])
        console.print(f"audit it: nano2 audit {documents_and_decisions}")
