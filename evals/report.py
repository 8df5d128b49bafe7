"""`nano2 eval report RUN_DIR...`: compare evaluation runs (parent vs child, 12B vs 9B) as Markdown and plots.

A RUN_DIR is a directory with a `summary.json` (written by `nano2 eval run`), or any directory above several of
them. For every (benchmark, metric) the table puts each run's score and 95% CI side by side and, for two runs, the
difference (second minus first). `scores.png` draws the same numbers as bars with CI whiskers. Runs that also hold
a thinking-budget curve (`budget/budget.json`) get `budget.png` with the curves overlaid, and directories of
throughput results (`throughput.json` from `nano2 eval throughput`) given among the RUN_DIRs are listed as tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nano2.errors import Nano2Error

SUMMARY_KEYS = ("name", "n", "metric", "score", "ci_low", "ci_high")


@dataclass
class RunSummary:
    label: str
    path: Path
    entries: list[dict[str, Any]]
    budget: dict[str, Any] | None = None


@dataclass
class ReportFiles:
    markdown: Path
    figures: list[Path] = field(default_factory=list)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise Nano2Error(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno})") from None


def read_summary(path: Path) -> RunSummary:
    """One run's summary.json, checked for the keys every benchmark entry must have."""
    body = _read_json(path)
    if not isinstance(body, dict) or not isinstance(body.get("benchmarks"), list):
        raise Nano2Error(f"{path}: expected {{'model': ..., 'benchmarks': [...]}}")
    for index, entry in enumerate(body["benchmarks"]):
        missing = [key for key in SUMMARY_KEYS if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise Nano2Error(f"{path}: benchmarks[{index}] lacks {', '.join(missing)}")
    budget_path = path.parent / "budget" / "budget.json"
    budget = _read_json(budget_path) if budget_path.is_file() else None
    return RunSummary(str(body.get("model") or path.parent.name), path.parent, body["benchmarks"], budget)


def find_runs(paths: list[Path]) -> list[RunSummary]:
    """The runs under the given directories, in the order given (sorted within a directory)."""
    if not paths:
        raise Nano2Error("no run directories given (directories with a summary.json from `nano2 eval run`)")
    runs: list[RunSummary] = []
    for path in paths:
        if path.is_file() and path.name == "summary.json":
            runs.append(read_summary(path))
            continue
        if not path.is_dir():
            raise Nano2Error(f"{path}: not a run directory (no such directory)")
        direct = path / "summary.json"
        found = [direct] if direct.is_file() else sorted(path.rglob("summary.json"))
        if not found:
            raise Nano2Error(f"{path}: no summary.json here or below (run `nano2 eval run CONFIG` first)")
        runs.extend(read_summary(p) for p in found)
    labels = [run.label for run in runs]
    for run in runs:  # two runs of the same model (different settings) get their directory names added
        if labels.count(run.label) > 1:
            run.label = f"{run.label} ({run.path.name})"
    return runs


def _rows(runs: list[RunSummary]) -> list[tuple[str, str]]:
    order: dict[tuple[str, str], None] = {}
    for run in runs:
        for entry in run.entries:
            order[(entry["name"], entry["metric"])] = None
    return list(order)


def _lookup(run: RunSummary, name: str, metric: str) -> dict[str, Any] | None:
    return next((e for e in run.entries if e["name"] == name and e["metric"] == metric), None)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None or entry["score"] is None:
        return "-"
    return f"{_pct(entry['score'])} [{_pct(entry['ci_low'])}, {_pct(entry['ci_high'])}]"


def markdown_table(runs: list[RunSummary]) -> str:
    """Scores in percent with their 95% CIs, one column per run (plus the difference for two runs)."""
    header = ["benchmark", "metric", "n", *(run.label for run in runs)]
    if len(runs) == 2:
        header.append(f"{runs[1].label} - {runs[0].label}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metric in _rows(runs):
        entries = [_lookup(run, name, metric) for run in runs]
        counts = sorted({str(e["n"]) for e in entries if e is not None})
        row = [name, metric, "/".join(counts), *(_cell(e) for e in entries)]
        if len(runs) == 2:
            a, b = entries
            both = a is not None and b is not None and a["score"] is not None and b["score"] is not None
            row.append(f"{100 * (b['score'] - a['score']):+.1f}" if both else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scores(runs: list[RunSummary], path: Path) -> Path:
    """Horizontal bars per (benchmark, metric), one colour per run, with the 95% CI as whiskers."""
    plt = _pyplot()
    rows = _rows(runs)
    height = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.45 * len(rows) * max(1, len(runs) * 0.6)))
    for index, run in enumerate(runs):
        ys, scores, lows, highs = [], [], [], []
        for row, (name, metric) in enumerate(rows):
            entry = _lookup(run, name, metric)
            if entry is None or entry["score"] is None:
                continue
            ys.append(row + (index - (len(runs) - 1) / 2) * height)
            scores.append(100 * entry["score"])
            lows.append(100 * (entry["score"] - entry["ci_low"]))
            highs.append(100 * (entry["ci_high"] - entry["score"]))
        ax.barh(ys, scores, height, xerr=[lows, highs], capsize=2, label=run.label, alpha=0.85)
    ax.set_yticks(range(len(rows)), [f"{name} ({metric})" for name, metric in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("score (%), whiskers: 95% CI")
    ax.set_title("Benchmark scores")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_budget_curves(series: list[tuple[str, list[dict[str, Any]]]], path: Path, title: str) -> Path:
    """Accuracy (with its CI band) and mean generated tokens vs thinking budget, one line per series.

    Each series is (label, points) with points as in budget.json: budget, accuracy, ci_low, ci_high, mean_tokens.
    """
    plt = _pyplot()
    fig, (acc_ax, tok_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for label, points in series:
        budgets = [p["budget"] for p in points]
        acc_ax.plot(budgets, [100 * p["accuracy"] for p in points], marker="o", label=label)
        acc_ax.fill_between(
            budgets, [100 * p["ci_low"] for p in points], [100 * p["ci_high"] for p in points], alpha=0.15
        )
        tok_ax.plot(budgets, [p["mean_tokens"] for p in points], marker="o", label=label)
    for ax, label in ((acc_ax, "accuracy (%), band: 95% CI"), (tok_ax, "mean generated tokens")):
        if min((p["budget"] for _, points in series for p in points), default=0) > 0:
            ax.set_xscale("log", base=2)
        ax.set_xlabel("thinking budget (tokens)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _throughput_tables(paths: list[Path]) -> list[str]:
    tables = []
    for path in paths:
        file = path / "throughput.json" if path.is_dir() else None
        if file is None or not file.is_file():
            continue
        body = _read_json(file)
        names = [m["label"] for m in body.get("models", [])]
        lines = [
            f"Throughput ({file}, engine {body.get('engine')}, batch {body.get('batch')}): output tokens/s",
            "",
            "| ISL/OSL | " + " | ".join(names) + " | ratio |",
            "|" + "---|" * (len(names) + 2),
        ]
        for cell in body.get("cells", []):
            values = [f"{cell['tokens_per_s'][name]:.1f}" for name in names]
            lines.append(f"| {cell['isl']}/{cell['osl']} | " + " | ".join(values) + f" | {cell['ratio']:.2f}x |")
        tables.append("\n".join(lines))
    return tables


def write_report(paths: list[Path], output: Path, title: str = "Evaluation report") -> ReportFiles:
    """report.md + scores.png (+ budget.png when runs have budget curves) in `output`."""
    paths = [Path(p) for p in paths]
    throughput_only = [p for p in paths if (p / "throughput.json").is_file() and not any(p.rglob("summary.json"))]
    runs = find_runs([p for p in paths if p not in throughput_only])
    output.mkdir(parents=True, exist_ok=True)
    figures = [plot_scores(runs, output / "scores.png")]
    parts = [
        f"# {title}",
        "",
        "Runs: " + ", ".join(f"`{run.label}` ({run.path})" for run in runs),
        "",
        "Scores in percent with 95% confidence intervals (Wilson for one 0/1 outcome per item, else a bootstrap "
        "over items; see each run's manifest).",
        "",
        markdown_table(runs),
        "",
        "![scores](scores.png)",
    ]
    if any(run.budget for run in runs):
        series = [(run.label, run.budget["budgets"]) for run in runs if run.budget]
        figures.append(plot_budget_curves(series, output / "budget.png", "Thinking budget: all benchmarks"))
        parts += ["", "## Thinking budget", "", _budget_table(runs), "", "![budget](budget.png)"]
    for table in _throughput_tables(throughput_only):
        parts += ["", "## Throughput", "", table]
    markdown = output / "report.md"
    markdown.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return ReportFiles(markdown, figures)


def _budget_table(runs: list[RunSummary]) -> str:
    lines = ["| run | budget | n | accuracy | mean tokens | mean thinking tokens |", "|---|---|---|---|---|---|"]
    for run in runs:
        for point in (run.budget or {}).get("budgets", []):
            lines.append(
                f"| {run.label} | {point['budget']} | {point['n']} | {_pct(point['accuracy'])} "
                f"[{_pct(point['ci_low'])}, {_pct(point['ci_high'])}] | {point['mean_tokens']:.1f} | "
                f"{point['mean_thinking_tokens']:.1f} |"
            )
    return "\n".join(lines)
