"""`nano2 train`: tokenize documents into shards, pretrain / continue pretraining on a compiled mixture plan."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer

from nano2.console import make_console

app = typer.Typer(help="Tokenize, pretrain on the compiled mixture plan, post-train.", no_args_is_help=True)


@app.command("tokenize")
def tokenize_cmd(
    inputs: list[Path] = typer.Argument(..., help="Artifact directories of Parquet/JSONL documents."),
    output: Path = typer.Option(..., "--output", "-o", help="Tokenized data root (mirrors the inputs' layout)."),
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="tokenizer.json or a directory holding one."),
    data_root: list[Path] = typer.Option(
        [Path(".")],
        "--data-root",
        "-d",
        help="Inputs' paths below this root are kept under OUT (repeatable: the innermost root holding an input).",
    ),
    field: str = typer.Option("text", "--field", help="Text column; rows with `messages` are rendered as chat."),
    glob: str | None = typer.Option(None, "--glob", help="Only files matching this pattern inside each input."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing token artifacts."),
    tasks: int | None = typer.Option(None, "--tasks", min=1, help="datatrove tasks per artifact (files dealt out)."),
    workers: int | None = typer.Option(None, "--workers", help="Tasks run at once (-1 = all)."),
    executor: Path | None = typer.Option(
        None, "--executor", help="Executor YAML (curation.executors.ExecutorConfig: kind local|slurm|ray, slurm: ...)."
    ),
) -> None:
    """Documents -> Megatron .bin/.idx shards (EOS after every document) with a `tokens` manifest per artifact."""
    from curation.executors import ExecutorConfig
    from nano2.config import load_yaml_model
    from nano2.units import format_count
    from train.tokenize import tokenize_inputs

    run_on = load_yaml_model(executor, ExecutorConfig) if executor else ExecutorConfig()
    overrides = {k: v for k, v in (("tasks", tasks), ("workers", workers)) if v is not None}
    run_on = run_on.model_copy(update=overrides)
    reports = tokenize_inputs(inputs, output, tokenizer, data_root, field, glob, overwrite, executor=run_on)
    if len(reports) < len(inputs):
        make_console().print(f"submitted {len(inputs) - len(reports)} artifact(s) to Slurm; rerun to write manifests")
    console = make_console()
    for r in reports:
        dropped = sum(r.dropped.values())
        console.print(
            f"{r.output_dir}: {r.files} files, {r.documents:,} documents, {r.tokens:,} tokens "
            f"({format_count(r.tokens)})"
            + (f", {r.chat_rows:,} chat rows" if r.chat_rows else "")
            + (
                f", dropped {dropped:,}: " + ", ".join(f"{k} {v}" for k, v in r.dropped.most_common())
                if dropped
                else ""
            )
            + (f" (empty: {r.empty_reason})" if r.empty_reason else "")
        )


@app.command("pretrain")
def pretrain_cmd(
    config: Path = typer.Argument(..., help="Train config YAML (train/configs/*.yaml)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Run directory (default: the config's)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's latest checkpoint."),
    stop_at_step: int | None = typer.Option(
        None, "--stop-at-step", help="Exit after this many steps (as a preempted job would); resume later."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Pretrain (or continue pretraining, e.g. long-context CPT) exactly on a compiled mixture plan.

    Launch with `torchrun --nproc_per_node N $(which nano2) train pretrain CONFIG` for data parallelism.
    """
    from train.config import load_train_config
    from train.loop import run_training

    cfg = load_train_config(config)
    run_training(cfg, out_dir=output, config_path=config, resume=resume, stop_at_step=stop_at_step, progress=progress)


if importlib.util.find_spec("train.post_cli"):
    from train.post_cli import register

    register(app)
