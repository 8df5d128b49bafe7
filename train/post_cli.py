"""`nano2 train sft|dpo|grpo|merge`: post-training commands, registered on the `nano2 train` app by train/cli.py.

Each training command reads a YAML config (train/configs/{sft,dpo,grpo}-*.yaml); the options override its paths and
step count, e.g. to point a shipped config at your own checkpoint and data. Results are model/ checkpoints with a
manifest, metrics.jsonl and a training plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from nano2.console import make_console

CHECKPOINT = typer.Option(None, "--checkpoint", "-c", help="Start checkpoint (overrides `checkpoint`).")
OUTPUT = typer.Option(None, "--output", "-o", help="Output directory (overrides `output_dir`).")
MAX_STEPS = typer.Option(None, "--max-steps", min=1, help="Optimizer steps (overrides `train.max_steps`).")
DATA = typer.Option(None, "--data", "-d", help="Data file or directory; repeat for several (overrides `data`).")
LIMIT = typer.Option(None, "--limit", min=1, help="Use only the first N valid rows (overrides `limit`).")


def _summary(kind: str, name: str, result: Any, keys: tuple[str, ...]) -> None:
    logged = [row for row in result.log_history if any(k in row for k in keys)]
    first, last = (logged[0], logged[-1]) if logged else ({}, {})
    moves = ", ".join(f"{k} {first[k]:.4g} -> {last[k]:.4g}" for k in keys if k in first and k in last)
    make_console().print(
        f"ok: {kind} {name}: {result.rows:,} rows"
        + (f", {result.tokens:,} tokens" if result.tokens else "")
        + (f", {moves}" if moves else "")
        + f"; wrote {result.output_dir}"
    )


def sft_command(
    config: Path = typer.Argument(..., help="SFT stage config (YAML)."),
    checkpoint: Path | None = CHECKPOINT,
    data: list[Path] | None = DATA,
    output: Path | None = OUTPUT,
    max_steps: int | None = MAX_STEPS,
    limit: int | None = LIMIT,
) -> None:
    """Supervised fine-tuning on chat rows, loss on the assistant target only (one stage per config)."""
    from train.sft import load_sft_config, run_sft

    cfg = load_sft_config(config, checkpoint=checkpoint, data=data or None, output_dir=output, limit=limit,
                          train={"max_steps": max_steps})  # fmt: skip
    _summary("sft", cfg.name, run_sft(cfg, config), ("loss",))


def dpo_command(
    config: Path = typer.Argument(..., help="DPO config (YAML)."),
    checkpoint: Path | None = CHECKPOINT,
    reference: Path | None = typer.Option(None, "--reference", help="Reference checkpoint (overrides `reference`)."),
    data: list[Path] | None = DATA,
    output: Path | None = OUTPUT,
    max_steps: int | None = MAX_STEPS,
    limit: int | None = LIMIT,
) -> None:
    """Direct preference optimisation against a frozen reference copy."""
    from train.dpo import load_dpo_config, run_dpo

    cfg = load_dpo_config(config, checkpoint=checkpoint, reference=reference, data=data or None, output_dir=output,
                          limit=limit, train={"max_steps": max_steps})  # fmt: skip
    _summary("dpo", cfg.name, run_dpo(cfg, config), ("loss", "rewards/margins"))


def grpo_command(
    config: Path = typer.Argument(..., help="GRPO config (YAML)."),
    checkpoint: Path | None = CHECKPOINT,
    output: Path | None = OUTPUT,
    max_steps: int | None = MAX_STEPS,
) -> None:
    """GRPO with verifiable rewards (GSM8K math via math-verify, IFEval-style rules)."""
    from train.grpo import load_grpo_config, run_grpo

    cfg = load_grpo_config(config, checkpoint=checkpoint, output_dir=output, train={"max_steps": max_steps})
    _summary("grpo", cfg.name, run_grpo(cfg, config), ("reward",))


def merge_command(
    a: Path = typer.Argument(..., help="Checkpoint A (e.g. the reasoning-strong one); weight 1 - alpha."),
    b: Path = typer.Argument(..., help="Checkpoint B (e.g. the chat-strong one); weight alpha."),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of B in (1 - alpha) * A + alpha * B, in [0, 1]."),
    output: Path = typer.Option(..., "--output", "-o", help="Output checkpoint directory."),
) -> None:
    """Linear merge of two checkpoints of the same architecture."""
    from train.merge import merge_checkpoints

    out = merge_checkpoints(a, b, alpha, output)
    make_console().print(f"ok: merged (1 - {alpha:g}) x {a} + {alpha:g} x {b}; wrote {out}")


def register(app: typer.Typer) -> None:
    """Add sft, dpo, grpo and merge to the `nano2 train` app."""
    app.command("sft")(sft_command)
    app.command("dpo")(dpo_command)
    app.command("grpo")(grpo_command)
    app.command("merge")(merge_command)
