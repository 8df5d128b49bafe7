"""The loss curve of a run with its data phases marked (and the learning rate beside it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mixtures.plan import Plan


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Step records of a metrics JSONL file (one JSON object per line)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_loss(records: list[dict[str, Any]], plan: Plan, out_png: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(steps, [r["loss"] for r in records], color="tab:blue", linewidth=1.2, label="training loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / token)")
    ax.set_xlim(0, max(plan.total_steps - 1, 1))
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [r["lr"] for r in records], color="tab:gray", linewidth=0.8, linestyle=":", label="lr")
    lr_ax.set_ylabel("learning rate", color="tab:gray")
    for i, phase in enumerate(plan.phases):
        if i:
            ax.axvline(phase.start_step, color="tab:red", linestyle="--", linewidth=0.9)
        ax.text(
            (phase.start_step + phase.end_step - 1) / 2,
            1.01,
            phase.name,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
            color="tab:red",
        )
    ax.set_title(title, pad=18)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
