"""`nano2 synth`: run synthesis configs, preview prompts, summarise outputs, serve a checkpoint, build teacher demos."""

from __future__ import annotations

from pathlib import Path

import typer

from nano2.errors import Nano2Error
from nano2.manifest import Manifest

app = typer.Typer(
    help="Synthetic data: Nemotron-CC rephrasing, translation, verified reasoning, truncated traces, long-context QA.",
    no_args_is_help=True,
)


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="Synthesis config (synthetic/configs/tiny.yaml, nano2.yaml)."),
    stage: list[str] = typer.Option([], "--stage", "-s", help="Run only these stages (default: all enabled)."),
) -> None:
    """Run the enabled stages; answered requests are cached, so a rerun after a kill re-sends nothing."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from nano2.console import make_console
    from synthetic.config import load_synth_config
    from synthetic.runner import run_synthesis

    cfg = load_synth_config(config)
    console = make_console()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=make_console(stderr=True)
    ) as progress:
        bar = progress.add_task("starting", total=None)

        def show(stage: str, stats) -> None:
            progress.update(
                bar,
                description=f"{stage}: {stats.jobs} requests ({stats.cached} cached, {stats.sent} sent, "
                f"{stats.failed} failed)",
            )

        result = run_synthesis(cfg, config_path=config, stages=stage or None, on_batch=show)
    if result.submitted:
        console.print(f"submitted {cfg.name} to {cfg.executor.kind}; stage manifests appear as its jobs finish")
        return
    for name, manifest in result.manifests.items():
        s = manifest.stats
        console.print(
            f"[bold]{name}[/]: {s.documents:,} rows, {s.tokens:,} tokens -> {cfg.stage_dir(name)}", highlight=False
        )
    r = result.requests
    console.print(f"requests: {r.jobs} ({r.cached} cached, {r.sent} sent, {r.failed} failed)", highlight=False)
    dropped = sum(n for reasons in result.drops.values() for n in reasons.values())
    if dropped:
        console.print(f"dropped: {dropped} (see `nano2 synth stats {config}`)", highlight=False)


def _read_document(path: Path, index: int, text_key: str) -> str:
    name = path.name.lower()
    if not path.is_file():
        raise Nano2Error(f"--doc {path}: file not found")
    if name.endswith((".parquet", ".jsonl", ".jsonl.gz")):
        from synthetic.config import InputConfig
        from synthetic.inputs import iter_documents

        for i, doc in enumerate(iter_documents(InputConfig(path=str(path), text_key=text_key))):
            if i == index:
                return doc.text
        raise Nano2Error(f"--doc {path}: has no row {index}")
    return path.read_text(encoding="utf-8", errors="replace")


@app.command("preview")
def preview_cmd(
    task: str = typer.Argument(..., help="Task: diverse_qa, distill, ..., translate, reasoning_sft, long_context_qa."),
    doc: Path = typer.Option(..., "--doc", help="A .txt file, or a .jsonl(.gz)/.parquet file (see --index)."),
    index: int = typer.Option(0, "--index", help="Row of a JSONL/Parquet file."),
    text_key: str = typer.Option("text", "--text-key", help="Field holding the document text."),
    language: str = typer.Option("de", "--language", help="translate: target language code."),
    code_tests: list[str] = typer.Option([], "--test", help="reasoning_sft: tests for a code problem."),
    chunk_tokens: int = typer.Option(1024, "--chunk-tokens", help="long_context_qa: chunk size (first chunk shown)."),
    tokenizer: str = typer.Option("default", "--tokenizer", help="Counts tokens of the rendered prompt."),
) -> None:
    """Render the prompt a task would send for one document (messages and the Nano 2 chat text)."""
    from model.tokenizer import render_chat
    from nano2.console import make_console
    from synthetic.config import LANGUAGE_NAMES, REPHRASE_TASKS
    from synthetic.prompting import load_prompt
    from synthetic.tasks import TASKS
    from synthetic.tasks.common import chunk_by_tokens, token_counter

    if task not in TASKS:
        raise Nano2Error(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if task == "truncate_traces":
        raise Nano2Error("truncate_traces sends no requests: it cuts verified traces (nothing to preview)")
    text = _read_document(doc, index, text_key).strip()
    counter = token_counter(tokenizer)
    if task in REPHRASE_TASKS:
        messages = load_prompt(task).messages(False, document=text)
    elif task == "translate":
        if language not in LANGUAGE_NAMES:
            raise Nano2Error(f"--language {language!r}: expected one of {', '.join(sorted(LANGUAGE_NAMES))}")
        messages = load_prompt("translate").messages(False, language=LANGUAGE_NAMES[language], qa=text)
    elif task in ("reasoning_sft", "preference"):
        if code_tests:
            messages = load_prompt("reasoning_code").messages(True, problem=text, tests="\n".join(code_tests))
        else:
            messages = load_prompt("reasoning_math").messages(True, problem=text)
    else:
        messages = load_prompt("long_context_qa").messages(False, chunk=chunk_by_tokens(text, chunk_tokens, counter)[0])
    console = make_console()
    for m in messages:
        console.rule(f"[bold]{m['role']}[/]")
        console.print(m["content"], markup=False, highlight=False)
    rendered = render_chat(messages, add_generation_prompt=True)
    console.rule("[bold]rendered (Nano 2 chat template)[/]")
    console.print(rendered, markup=False, highlight=False)
    console.rule(f"{counter.count(rendered):,} tokens ({tokenizer} tokenizer)")


def _stage_manifests(paths: list[Path]) -> list[tuple[Path, Manifest]]:
    """The stage artifacts synthesis wrote at or directly below each path (a config file names both its roots)."""
    from nano2.manifest import MANIFEST_NAME, ArtifactKind, read_manifest
    from synthetic.config import load_synth_config
    from synthetic.records import SYNTHETIC_STAGE

    roots: list[Path] = []
    for path in paths:
        if path.is_file():
            cfg = load_synth_config(path)
            roots += [Path(cfg.output_dir), cfg.chat_root]
        elif path.is_dir():
            roots.append(path)
        else:
            raise Nano2Error(f"{path}: not a synthesis config or directory")
    found = []
    for root in roots:
        if not root.is_dir():
            continue
        dirs = [root] if (root / MANIFEST_NAME).exists() else sorted(p for p in root.iterdir() if p.is_dir())
        for d in dirs:
            if (d / MANIFEST_NAME).exists():
                manifest = read_manifest(d)
                if SYNTHETIC_STAGE in manifest.extra and manifest.kind != ArtifactKind.DECISIONS:
                    found.append((d, manifest))
    return found


@app.command("stats")
def stats_cmd(
    paths: list[Path] = typer.Argument(
        ..., help="A synthesis config (both its roots), or output_dir / chat_dir / stage directories."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Also write a PNG: tokens by task, drops by reason."),
) -> None:
    """Rows and tokens by task, drops by reason, and requests, from the stage manifests."""
    from rich.table import Table

    from nano2.console import make_console

    manifests = _stage_manifests(paths)
    if not manifests:
        where = ", ".join(str(p) for p in paths)
        raise Nano2Error(f"{where}: no synthetic stage artifacts (manifest.json written by `nano2 synth`) here")
    console = make_console()
    rows = Table(title="rows")
    for col in ("stage", "task", "rows", "tokens"):
        rows.add_column(col, justify="right" if col in ("rows", "tokens") else "left")
    drops = Table(title="drops")
    for col in ("stage", "task", "reason", "count"):
        drops.add_column(col, justify="right" if col == "count" else "left")
    requests = Table(title="requests")
    for col in ("stage", "requests", "cached", "sent", "failed"):
        requests.add_column(col, justify="left" if col == "stage" else "right")
    for d, m in manifests:
        for task, s in m.stats.by.get("task", {}).items():
            rows.add_row(d.name, task, f"{s.documents or 0:,}", f"{s.tokens or 0:,}")
        for task, reasons in m.extra.get("drops", {}).items():
            for reason, n in reasons.items():
                drops.add_row(d.name, task, reason, f"{n:,}")
        r = m.extra.get("requests", {})
        requests.add_row(d.name, *(f"{r.get(k, 0):,}" for k in ("jobs", "cached", "sent", "failed")))
    console.print(rows)
    console.print(drops)
    console.print(requests)
    if plot is not None:
        plot_stats([m for _, m in manifests], plot)
        console.print(f"wrote {plot}", highlight=False)


def plot_stats(manifests: list[Manifest], path: Path) -> None:
    """Two panels: kept tokens by task, and drops by task and reason (what the run threw away, and why)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens = {t: s.tokens or 0 for m in manifests for t, s in m.stats.by.get("task", {}).items()}
    drops = {
        f"{t}: {r}": n for m in manifests for t, reasons in m.extra.get("drops", {}).items() for r, n in reasons.items()
    }
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, max(3.0, 0.35 * max(len(tokens), len(drops), 1) + 1.5)))
    left.barh(list(tokens), list(tokens.values()), color="tab:blue")
    left.set_xlabel("tokens kept")
    left.set_title("rows by task")
    right.barh(list(drops), list(drops.values()), color="tab:red")
    right.set_xlabel("dropped")
    right.set_title("drops by task and reason")
    for ax in (left, right):
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@app.command("serve")
def serve_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint directory made by `nano2 model` / train (with tokenizer)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", help="0 picks a free port (printed on the first line)."),
    model_name: str | None = typer.Option(None, "--model-name", help="Served model name (default: the dir name)."),
    dtype: str = typer.Option("fp32", "--dtype"),
) -> None:
    """Serve a local checkpoint over an OpenAI-compatible HTTP API (chat and completions)."""
    from synthetic.backends.local import LocalBackend
    from synthetic.serve import serve

    serve(LocalBackend(checkpoint, dtype=dtype, model_name=model_name), host=host, port=port)


@app.command("teacher-data")
def teacher_cmd(
    out: Path = typer.Argument(..., help="Output directory for the demonstration rows (Parquet + manifest)."),
    gsm8k: Path = typer.Option(..., "--gsm8k", help="GSM8K train JSONL(.gz) (question, answer)."),
    curated: list[Path] = typer.Option(..., "--curated", help="Curated web artifact(s) or files (text, id)."),
    mbpp: Path | None = typer.Option(None, "--mbpp", help="MBPP full JSONL (train ids 601-974 only are used)."),
    limit: int = typer.Option(200, "--limit", help="Demonstrations per task at most."),
    max_words: int = typer.Option(120, "--max-words", help="Cap on document words in a demonstration."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Format demonstrations for every task from real data, to fine-tune a tiny 'format teacher' on CPU."""
    from nano2.console import make_console
    from synthetic.teacher import TeacherSources, build_teacher_data

    manifest = build_teacher_data(
        out, TeacherSources(gsm8k=gsm8k, curated=list(curated), mbpp=mbpp), limit=limit, max_words=max_words, seed=seed
    )
    console = make_console()
    for task, s in manifest.stats.by.get("task", {}).items():
        console.print(f"{task}: {s.documents:,} rows, {s.tokens:,} tokens", highlight=False)
    for task, reason in manifest.extra.get("unavailable", {}).items():
        console.print(f"[yellow]{task}: no demonstrations[/] ({reason})", highlight=False)
