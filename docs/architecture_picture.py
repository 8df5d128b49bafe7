"""Draw docs/architecture.png: the layers (left) and the data flow from WARC/repository to checkpoint (right).

The layers are read from tests/test_architecture.py (the test that enforces them), so the picture cannot drift
from the rule. Run: `.venv/bin/python docs/architecture_picture.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.test_architecture import LAYERS  # noqa: E402

LAYER_NOTES = {
    "nano2 (ground floor)": "contracts/ (documents, chat, shards, megatron, tokens)  manifest  config  errors  units",
    "model, verify": "model: Nemotron-H, tokenizer, decoding   verify: answers, sandbox, pass@k, IFEval",
    "curation": "web, math, multilingual, code + licenses, quality classifiers (datatrove)",
    "mixtures": "phase mixture specs -> exact token plans",
    "synthetic": "LLM backends, rephrase, translate, reasoning, truncate, preference",
    "train": "tokenize, loader, pretrain, SFT / DPO / GRPO, merge",
    "compress": "importance, prune, NAS, distillation",
    "evals": "benchmarks, runner, budget, throughput",
    "nano2.app": "CLI, recipe runner, report, audit (DuckDB)",
}

FLOW = [
    ("WARCs, repositories", "raw"),
    ("curation/  ->  data/curated/{web,math,multilingual,code}", "documents"),
    ("synthetic/  ->  data/synthetic/*  +  chat/*", "documents / chat rows"),
    ("train tokenize  ->  data/tokens (.bin/.idx)", "tokens"),
    ("mixtures  ->  plan/plan.json", "plan"),
    ("train pretrain / long-context  ->  parent/", "checkpoint"),
    ("train sft / dpo / grpo / merge  ->  parent/final", "checkpoint"),
    ("compress  ->  compress/child, compress/distill", "checkpoint"),
    ("evals  ->  evals/*", "eval"),
]


def box(ax, x: float, y: float, w: float, h: float, text: str, note: str, color: str) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01", fc=color, ec="#333333", lw=0.8))
    ax.text(x + 0.012, y + h * 0.62, text, fontsize=9.5, weight="bold", va="center")
    if note:
        ax.text(x + 0.012, y + h * 0.27, note, fontsize=7, va="center", color="#333333")


def main() -> Path:
    fig, ax = plt.subplots(figsize=(15, 8.2))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    n = len(LAYERS)
    h = 0.86 / n
    title = "Layers (imports only point down; tests/test_architecture.py)"
    ax.text(0.01, 0.965, title, fontsize=11, weight="bold")
    for i, layer in enumerate(LAYERS):
        name = ", ".join(layer)
        y = 0.04 + i * h
        color = "#d9e8f5" if i == 0 else ("#f6e3c6" if i == n - 1 else "#e8f0e0")
        box(ax, 0.01, y + 0.006, 0.47, h - 0.012, name, LAYER_NOTES.get(name, ""), color)
    ax.text(0.52, 0.965, "Data flow (every folder has a manifest.json)", fontsize=11, weight="bold")
    fh = 0.86 / len(FLOW)
    for i, (text, kind) in enumerate(FLOW):
        y = 0.9 - (i + 1) * fh
        box(ax, 0.52, y + 0.01, 0.46, fh - 0.03, text, f"kind: {kind}", "#f3f3f3")
        if i:
            ax.add_patch(
                FancyArrowPatch((0.75, y + fh + 0.01), (0.75, y + fh - 0.02), arrowstyle="-|>", mutation_scale=12)
            )
    out = REPO / "docs" / "architecture.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out


if __name__ == "__main__":
    print(main())
