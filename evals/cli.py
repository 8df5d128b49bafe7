"""`nano2 eval`: run benchmarks, the thinking-budget curve and the throughput grid; compare runs in a report."""

from __future__ import annotations

from pathlib import Path

import typer

from nano2.errors import Nano2Error

app = typer.Typer(
    help="Evaluations: GSM8K, MATH-500, AIME, MGSM, MMLU-STEM, HumanEval/MBPP (sandboxed), IFEval; thinking budget; "
    "throughput.",
    no_args_is_help=True,
)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nano2.console import make_console

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=make_console(stderr=True),
        transient=True,  # gone when the command ends: an error stays the one line on stderr
    )


def _summary_table(summary: dict, title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("benchmark", "metric", "n", "score %", "95% CI"):
        table.add_column(column, justify="right" if column in ("n", "score %") else "left")
    for entry in summary["benchmarks"]:
        table.add_row(
            entry["name"],
            entry["metric"],
            str(entry["n"]),
            f"{100 * entry['score']:.1f}",
            f"[{100 * entry['ci_low']:.1f}, {100 * entry['ci_high']:.1f}]",
        )
    return table


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="Eval config (evals/configs/tiny.yaml, nano2.yaml)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Checkpoint dir (or served model) to evaluate."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Run directory (default OUTPUT_DIR/LABEL)."),
    limit: int | None = typer.Option(None, "--limit", help="Override every benchmark's limit (first N items)."),
    rescore: bool = typer.Option(False, "--rescore", help="Score the stored outputs again (after a scorer fix)."),
) -> None:
    """Generate what is missing (a rerun resumes), score, and write samples.jsonl, summary.json and a report."""
    from evals.config import load_eval_config
    from evals.run import resolve_backend, run_eval
    from nano2.console import make_console

    cfg = load_eval_config(config)
    resolve_backend(cfg, model)  # a missing checkpoint is reported before any progress bar starts
    if limit is not None:
        if limit < 1:
            raise Nano2Error(f"--limit must be >= 1, got {limit}")
        cfg = cfg.model_copy(update={"benchmarks": [b.model_copy(update={"limit": limit}) for b in cfg.benchmarks]})
    console = make_console()
    with _progress() as progress:
        bar = progress.add_task("loading items", total=None)

        def show(done: int, total: int, what: str) -> None:
            progress.update(bar, completed=done, total=total, description=f"samples ({what})")

        result = run_eval(
            cfg, config_path=config, model_override=model, output=output, rescore=rescore, on_progress=show
        )
    console.print(_summary_table(result.summary, f"{result.summary['model']}: scores"))
    console.print(
        f"samples: {result.planned_samples} planned, {result.reused} reused, {result.generated} generated"
        + (f", {result.rescored} rescored" if result.rescored else "")
        + f" -> {result.output_dir}",
        highlight=False,
    )
    if result.dropped_lines:
        console.print(f"[yellow]{result.dropped_lines} cut line(s) in samples.jsonl were dropped and regenerated[/]")
    if result.errors:
        console.print(f"[yellow]{len(result.errors)} request(s) failed (rerun to retry); first: {result.errors[0]}[/]")


@app.command("budget")
def budget_cmd(
    config: Path = typer.Argument(..., help="Eval config with a `budget:` section."),
    model: str | None = typer.Option(None, "--model", "-m", help="Checkpoint directory (overrides the config)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Output dir (default OUTPUT_DIR/LABEL/budget)."),
    limit: int | None = typer.Option(None, "--limit", help="Override every benchmark's limit (first N items)."),
) -> None:
    """Accuracy and mean generated tokens vs thinking budget (Nano 2's budget rule); JSON + plot."""
    from evals.budget import run_budget_curve
    from evals.config import load_eval_config
    from evals.run import resolve_backend
    from nano2.console import make_console

    cfg = load_eval_config(config)
    resolve_backend(cfg, model)
    if limit is not None:
        if limit < 1:
            raise Nano2Error(f"--limit must be >= 1, got {limit}")
        cfg = cfg.model_copy(update={"benchmarks": [b.model_copy(update={"limit": limit}) for b in cfg.benchmarks]})
    with _progress() as progress:
        bar = progress.add_task("loading", total=None)

        def show(done: int, total: int, what: str) -> None:
            progress.update(bar, completed=done, total=total, description=what)

        result = run_budget_curve(cfg, config_path=config, model_override=model, output=output, on_progress=show)
    from rich.table import Table

    table = Table(title=f"{result.curve['model']}: thinking budget", title_justify="left")
    for column in ("budget", "n", "accuracy %", "95% CI", "mean tokens", "mean thinking", "closed by rule %"):
        table.add_column(column, justify="right")
    for p in result.curve["budgets"]:
        table.add_row(
            str(p["budget"]),
            str(p["n"]),
            f"{100 * p['accuracy']:.1f}",
            f"[{100 * p['ci_low']:.1f}, {100 * p['ci_high']:.1f}]",
            f"{p['mean_tokens']:.1f}",
            f"{p['mean_thinking_tokens']:.1f}",
            f"{100 * p['forced_close_rate']:.0f}",
        )
    console = make_console()
    console.print(table)
    console.print(
        f"{result.generated} generated, {result.reused} reused -> {result.output_dir} (budget.json, budget.png)",
        highlight=False,
    )


def _vllm_options(pairs: list[str]) -> dict:
    import yaml

    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise Nano2Error(f"--vllm-option {pair!r}: expected KEY=VALUE (e.g. mamba_ssm_cache_dtype=float32)")
        key, value = pair.split("=", 1)
        options[key.strip()] = yaml.safe_load(value)
    return options


@app.command("throughput")
def throughput_cmd(
    model_a: str = typer.Argument(..., help="Checkpoint dir or named config (e.g. a hybrid)."),
    model_b: str = typer.Argument(..., help="Checkpoint dir or named config (e.g. a transformer); ratios are A/B."),
    cells: str = typer.Option("1k/1k,1k/8k,8k/16k", "--cells", help="ISL/OSL cells, comma separated (k = 1024)."),
    output: Path = typer.Option(Path("runs/evals/throughput"), "--output", "-o", help="Output directory."),
    engine: str = typer.Option("auto", "--engine", help="auto (vLLM on a GPU when installed), local or vllm."),
    batch: int = typer.Option(1, "--batch", help="Sequences decoded together."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 or bf16."),
    compile: bool = typer.Option(False, "--compile/--no-compile", help="local: torch.compile the Mamba step."),
    vllm_option: list[str] = typer.Option([], "--vllm-option", help="vllm.LLM KEY=VALUE (repeatable)."),
    repeats: int = typer.Option(1, "--repeats", help="Time each cell this many times; report the median."),
    threads: int | None = typer.Option(None, "--threads", help="local: torch CPU threads (default: torch's)."),
) -> None:
    """Output tokens/s of two models over ISL/OSL cells (the paper's hybrid vs transformer comparison)."""
    from evals.throughput import parse_cells, run_throughput
    from nano2.console import make_console

    if engine not in ("auto", "local", "vllm"):
        raise Nano2Error(f"--engine: expected auto, local or vllm, got {engine!r}")
    grid = parse_cells(cells)
    with _progress() as progress:
        bar = progress.add_task("loading", total=2 * len(grid))

        def show(label: str, isl: int, osl: int) -> None:
            progress.update(bar, advance=1, description=f"{label} {isl}/{osl}")

        result = run_throughput(
            model_a,
            model_b,
            grid,
            output,
            engine=engine,
            batch=batch,
            dtype=dtype,  # type: ignore[arg-type]
            compile=compile,
            vllm_options=_vllm_options(vllm_option),
            repeats=repeats,
            threads=threads,
            on_cell=show,
        )
    from rich.table import Table

    labels = [m["label"] for m in result["models"]]
    table = Table(title=f"output tokens/s ({result['engine']}, batch {batch}, {dtype})", title_justify="left")
    for column in ("ISL/OSL", *labels, result["ratio_of"]):
        table.add_column(column, justify="right")
    for cell in result["cells"]:
        rates = [f"{cell['tokens_per_s'][label]:.1f}" for label in labels]
        table.add_row(f"{cell['isl']}/{cell['osl']}", *rates, f"{cell['ratio']:.2f}x")
    console = make_console()
    console.print(table)
    foreign = result["machine"]["foreign_cpu_percent"]
    note = f"; other processes used {foreign:.0f}% of the CPUs meanwhile" if foreign is not None else ""
    console.print(f"-> {output} (throughput.json, throughput.png){note}", highlight=False)


@app.command("report")
def report_cmd(
    runs: list[Path] = typer.Argument(..., help="Run directories (with summary.json) or directories above them."),
    output: Path = typer.Option(Path("runs/evals/report"), "--output", "-o", help="Where report.md and PNGs go."),
    title: str = typer.Option("Evaluation report", "--title"),
) -> None:
    """Per-benchmark scores with 95% CIs side by side (e.g. parent vs child), as Markdown and plots."""
    from evals.report import write_report
    from nano2.console import make_console

    files = write_report(runs, output, title=title)
    console = make_console()
    console.print(files.markdown.read_text(encoding="utf-8"), markup=False, highlight=False)
    console.print(f"-> {files.markdown}, " + ", ".join(str(f) for f in files.figures), highlight=False)
