"""`nano2 curate train-quality CONFIG -o DIR`: train the quality classifiers of a config and print their metrics.

Kept import-light: `nano2` imports this module on every start, so training code loads only when the command runs.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add `train-quality` to the `nano2 curate` app."""
    app.command("train-quality")(train_quality_command)


def train_quality_command(
    config: str = typer.Argument(..., help="YAML config (see curation/quality/training.py), or 'tiny' (built in)."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for OUTPUT/<classifier>/model.bin + manifests."),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Root of relative source paths (default: config's data_root, $NANO2_SHARED_DATA)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Override the config's seed."),
) -> None:
    """Train fastText quality classifiers (DCLM recipe: instruction/explanatory text vs web, bigrams), seeded;
    writes held-out precision/recall/F1/AUC and agreement with human keep/drop labels into each manifest."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from curation.quality.training import load_train_config, progress_steps, train_quality
    from nano2.console import make_console

    cfg, config_path = load_train_config(config)
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    console = make_console()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("start", total=progress_steps(cfg))
        started = [False]

        def step(description: str) -> None:
            if started[0]:
                progress.advance(task)
            started[0] = True
            progress.update(task, description=description)

        report = train_quality(cfg, output, config_path=config_path, data_root=data_root, progress=step)
        progress.advance(task)
    _print_summary(console, report)


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _print_summary(console, report) -> None:
    from rich.table import Table

    table = Table(title=f"quality classifiers in {report.output_dir}", title_justify="left")
    for column in ("classifier", "train hq/cc", "held-out P", "R", "F1", "AUC", "human AUC", "human acc"):
        table.add_column(column, justify="left" if column == "classifier" else "right")
    for clf in report.classifiers:
        dclm = clf.dclm or {}
        table.add_row(
            clf.name,
            f"{clf.train_docs['hq']}/{clf.train_docs['cc']}",
            _fmt(clf.holdout["precision"]),
            _fmt(clf.holdout["recall"]),
            _fmt(clf.holdout["f1"]),
            _fmt(clf.holdout["auc"]),
            _fmt(dclm.get("auc")),
            _fmt(dclm.get("accuracy")),
        )
    ensemble = report.ensemble_dclm
    if ensemble is not None:
        table.add_row(
            "ensemble (max bucket)", "", "", "", "", "",
            _fmt(ensemble["bucket_auc"]), _fmt(ensemble["at_base_rate"]["accuracy"]),
        )  # fmt: skip
        first = report.classifiers[0].dclm or {}
        table.caption = (
            f"human = DCLM keep/drop labels ({ensemble['documents']} docs, keep rate {_fmt(first.get('base_rate'))}); "
            "acc at the threshold that keeps as many as the humans did"
        )
    console.print(table)
    console.print(f"wrote {report.output_dir}/manifest.json (kind quality-classifier-set, id {report.manifest_id})")
