"""`nano2 compress`: Minitron for the hybrid — importance, pruning surgery, memory-budgeted search, distillation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from nano2.console import make_console
from nano2.errors import Nano2Error

app = typer.Typer(
    help="Prune and distil NemotronH checkpoints (importance, prune, search, distill).", no_args_is_help=True
)
NEIGHBOUR_ROWS = 40


@app.command("importance")
def importance_cmd(
    checkpoint: Path = typer.Argument(..., help="Parent checkpoint directory."),
    calib: str = typer.Option(..., "--calib", help="Mixture spec (YAML), shard directory or token file."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for importance.safetensors + manifest."),
    data_root: Path = typer.Option(Path("."), "--data-root", "-d", help="Where a spec's source paths resolve."),
    source: list[str] = typer.Option(
        [], "--source", help="NAME=DIR: token directory (under --data-root) of a spec source that declares its tokens."
    ),
    samples: int = typer.Option(1024, "--samples", help="Calibration sequences (paper: ~1024)."),
    seq_len: int = typer.Option(4096, "--seq-len"),
    batch_size: int = typer.Option(8, "--batch-size"),
    depth_samples: int = typer.Option(64, "--depth-samples", help="Sequences for the depth ranking (0: skip it)."),
    max_remove: int = typer.Option(10, "--max-remove", help="Layers removed one by one in the depth ranking."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device"),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 or bf16."),
) -> None:
    """Score FFN neurons, embedding channels, Mamba heads (within groups), attention heads and layers."""
    from compress.importance import ImportanceSettings
    from compress.pipeline import measure_importance

    settings = ImportanceSettings(
        samples=samples,
        seq_len=seq_len,
        batch_size=batch_size,
        depth_samples=min(depth_samples, samples),
        depth_max_remove=max_remove,
        seed=seed,
    )
    sources = {}
    for item in source:
        name, sep, directory = item.partition("=")
        if not sep or not name or not directory:
            raise Nano2Error(f"--source {item!r}: expected NAME=DIR")
        sources[name] = directory
    console = make_console()
    scores, cfg = measure_importance(
        checkpoint,
        calib,
        output,
        settings,
        data_root=data_root,
        sources=sources,
        device=device,
        dtype=dtype,
        console=console,
    )
    console.print(f"wrote {output}: scores from {samples} x {seq_len} calibration tokens")
    if scores.depth_removal_order:
        table = Table(title="depth ranking (least important first)", title_justify="left")
        for col in ("step", "layer", "kind", "logit MSE after removal"):
            table.add_column(col, justify="right")
        kinds = {"M": "Mamba", "*": "attention", "-": "MLP"}
        for step, (layer, mse) in enumerate(zip(scores.depth_removal_order, scores.depth_removal_mse, strict=True)):
            table.add_row(str(step + 1), str(layer), kinds[cfg.pattern[layer]], f"{mse:.4g}")
        console.print(table)


@app.command("prune")
def prune_cmd(
    checkpoint: Path = typer.Argument(..., help="Parent checkpoint directory."),
    shape: list[str] = typer.Option(
        ..., "--shape", help="A shape YAML file, or key=value items: depth, drop_layers, hidden, ffn, mamba_heads."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Child checkpoint directory."),
    scores: Path | None = typer.Option(None, "--scores", help="Importance directory (needed to narrow anything)."),
    rescale_norms: bool = typer.Option(
        True, "--rescale-norms/--no-rescale-norms", help="Scale RMSNorm weights by sqrt(parent/child width)."
    ),
) -> None:
    """Slice a parent checkpoint to a smaller shape and save the child (loadable with AutoModelForCausalLM)."""
    from compress.prune import load_shape, prune_checkpoint
    from model.io import load_config
    from model.size import total_params

    items = [part for item in shape for part in item.split()]
    target = load_shape(items)
    parent = load_config(checkpoint)
    out, child = prune_checkpoint(checkpoint, target, output, scores, rescale_norms)
    c = child.counts()
    make_console().print(
        f"wrote {out}: {child.name}, {child.num_layers} layers ({c['mamba']} M / {c['attention']} * / {c['mlp']} -), "
        f"hidden {child.hidden_size}, FFN {child.intermediate_size}, Mamba heads {child.mamba_num_heads}; "
        f"{total_params(child):,} parameters ({total_params(child) / total_params(parent):.1%} of the parent)"
    )


def _candidate_table(title: str, rows: list[tuple[str, Any]], budget_gib: float, scored: bool) -> Table:
    from compress.nas import format_params

    table = Table(title=title, title_justify="left")
    cols = ["", "depth", "hidden", "FFN", "Mamba heads", "M/*/-", "params", "memory GiB", "fits", "in band"]
    if scored:
        cols += ["proxy loss", "KL to parent", "distilled loss", "rank"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("", "M/*/-") else "right")
    for label, c in rows:
        counts = f"{c.pattern.count('M')}/{c.pattern.count('*')}/{c.pattern.count('-')}"
        fits = "[green]yes[/]" if c.fits else f"[red]no (+{c.memory_gib - budget_gib:.3g})[/]"
        cells = [
            label,
            str(c.depth),
            str(c.hidden),
            str(c.ffn),
            str(c.mamba_heads),
            counts,
            format_params(c.params),
            f"{c.memory_gib:.4g}",
            fits,
            "yes" if c.in_band else "no",
        ]
        if scored:
            cells += [
                "-" if c.proxy_loss is None else f"{c.proxy_loss:.4f}",
                "-" if c.proxy_kl is None else f"{c.proxy_kl:.4f}",
                "-" if c.distill_loss is None else f"{c.distill_loss:.4f}",
                "-" if c.rank is None else str(c.rank),
            ]
        table.add_row(*cells)
    return table


@app.command("search")
def search_cmd(
    config: Path = typer.Argument(..., help="Compression config (compress/configs/*.yaml)."),
    no_train: bool = typer.Option(False, "--no-train", help="Only the memory / parameter table (no checkpoint)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Output directory (default: the config's)."),
    device: str = typer.Option("cpu", "--device", help="Where the parent and candidates run when scoring."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 or bf16 for the parent when scoring."),
    show: int = typer.Option(NEIGHBOUR_ROWS, "--show", help="Feasible candidates printed (all are saved)."),
) -> None:
    """Candidates under the memory budget and parameter band; with a parent checkpoint, ranked depth then width."""
    from compress.config import load_compress_config
    from compress.nas import band, format_params, neighbours
    from compress.pipeline import run_search
    from model.size import get_gpu

    cfg = load_compress_config(config)
    console = make_console()
    result = run_search(cfg, config, no_train=no_train, out_dir=output, device=device, console=console, dtype=dtype)
    space = cfg.search
    gpu = get_gpu(space.budget.gpu)
    low, high = band(space)
    width = [c for c in result.candidates if c.stage != "depth"]
    feasible = [c for c in width if c.feasible]
    console.print(
        f"[bold]{cfg.name}[/]: {len(width)} candidates; {sum(c.fits for c in width)} fit {gpu.name} "
        f"({gpu.budget_gib:.4g} GiB) at {space.budget.context:,} tokens x batch {space.budget.batch} "
        f"({space.budget.dtype}, SSM state fp32); {len(feasible)} also within {format_params(int(low))}-"
        f"{format_params(int(high))} parameters"
    )
    scored = not no_train
    if space.reference is not None:
        from compress.config import parent_config
        from compress.nas import make_candidate

        by_key = {c.key: c for c in width}
        rows = [(label, by_key[key]) for label, key in neighbours(space, space.reference, lambda k: by_key[k].fits)]
        parent = parent_config(cfg, config)
        rows.append(
            (
                "parent",
                make_candidate(
                    parent,
                    space,
                    parent.num_layers,
                    [],
                    parent.hidden_size,
                    parent.intermediate_size,
                    parent.mamba_num_heads,
                ),
            )
        )
        title = "reference shape, its neighbours along each axis up to the first that does not fit, and the parent"
        console.print(_candidate_table(title, rows, gpu.budget_gib, False))
        verdict = "fits" if rows[0][1].fits else "does NOT fit"
        over = [label for label, c in rows[1:] if not c.fits]
        console.print(f"reference {verdict}; over the budget: {', '.join(over) or 'none'}")
    depth_rows = [c for c in result.candidates if c.stage == "depth"]
    if depth_rows:
        console.print(
            _candidate_table(
                "stage 1: depth (full width)", [(f"d{c.depth}", c) for c in depth_rows], gpu.budget_gib, True
            )
        )
        console.print(f"best depth: {result.best_depth} (parent held-out loss {result.parent_loss:.4f})")
    if scored:
        ranked = sorted((c for c in width if c.rank is not None), key=lambda c: c.rank)
        title = f"stage 2: widths at depth {result.best_depth}, ranked"
        console.print(_candidate_table(title, [(f"#{c.rank}", c) for c in ranked[:show]], gpu.budget_gib, True))
    else:
        best = sorted(feasible, key=lambda c: (-c.depth, -c.params))[:show]
        title = f"feasible candidates ({len(feasible)}; deepest and largest first, {len(best)} shown)"
        console.print(_candidate_table(title, [("", c) for c in best], gpu.budget_gib, False))
    console.print(f"table: {result.out_dir / 'candidates.csv'} (+ .json, candidates.png, manifest.json)")


@app.command("distill")
def distill_cmd(
    config: Path = typer.Argument(..., help="Compression config (compress/configs/*.yaml)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Output directory (default: the config's)."),
    student: Path | None = typer.Option(
        None, "--student", help="Pruned child (default: distill.student or the search winner, pruned now)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the distillation run from its last checkpoint."),
    stop_at_step: int | None = typer.Option(None, "--stop-at-step", help="Exit after this many steps."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    evaluate_after: bool = typer.Option(
        True, "--eval/--no-eval", help="Held-out loss of parent, pruned and distilled child (search scoring set)."
    ),
) -> None:
    """Logit-KL distillation of the pruned child from the parent, in train/'s loop (checkpoints, resume, torchrun)."""
    from compress.config import load_compress_config
    from compress.pipeline import distill_run

    cfg = load_compress_config(config)
    report = distill_run(cfg, config, output, student, resume, stop_at_step, progress, evaluate_after=evaluate_after)
    console = make_console()
    ev = report.get("evaluation") or {}
    if "distilled" in ev:
        console.print(
            f"held-out loss: parent {ev['parent']:.4f}, pruned {ev['pruned']:.4f}, distilled {ev['distilled']:.4f}; "
            f"recovered {ev['recovered']:.1%} of the pruning gap"
        )
    elif ev:
        console.print(f"held-out loss: parent {ev['parent']:.4f}, pruned {ev['pruned']:.4f} (run not finished)")
    console.print(f"distilled child: {report['out_dir']}")
