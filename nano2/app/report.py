"""`nano2 report RUN_DIR`: one self-contained HTML page (plots embedded) and a Markdown summary of a recipe run.

Everything shown is read back from the run itself: stage state in `.recipe/`, the manifests and data files through
the DuckDB audit views (`nano2.app.audit.Audit`), and the metrics/tables the stages wrote beside their manifests. A
section whose artifacts are not in the run says so instead of disappearing, so a partial run still reports what it
has. Plots are PNG (matplotlib, Agg) written to `<out>/figures/` and embedded in the HTML as data URIs.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from nano2.errors import Nano2Error

FIGURE_DPI = 110


@dataclass
class Table:
    columns: list[str]
    rows: list[Sequence[Any]]
    caption: str = ""


@dataclass
class Section:
    key: str
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, bytes, str]] = field(default_factory=list)  # (file name, png, alt text)
    missing: str | None = None  # why the section is empty
    caveats: list[str] = field(default_factory=list)  # what a reader must not conclude from what is shown
    figure_columns: int = 1  # 2 puts figures side by side (parent next to child)


# --------------------------------------------------------------------------------------------------- helpers


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rows(audit, sql: str) -> tuple[list[str], list[tuple]]:
    rel = audit.query(sql)
    if rel is None:
        return [], []
    return list(rel.columns), rel.fetchall()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _manifest_dirs(run_dir: Path, kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """(directory, manifest) for every manifest of `kind` under the run, skipping dot folders."""
    out = []
    for path in sorted(run_dir.rglob("manifest.json")):
        if any(part.startswith(".") for part in path.relative_to(run_dir).parts[:-1]):
            continue
        try:
            body = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if body.get("kind") == kind:
            out.append((path.parent, body))
    return out


# --------------------------------------------------------------------------------------------------- sections


def stage_section(run_dir: Path) -> Section:
    section = Section("stages", "Stages and wall time")
    state_dir = run_dir / ".recipe" / "state"
    last = run_dir / ".recipe" / "last_run.json"
    if not state_dir.is_dir():
        section.missing = "no `.recipe/` state: this directory was not made by `nano2 run`"
        return section
    order = []
    if last.exists():
        summary = json.loads(last.read_text())
        order = [s["name"] for s in summary.get("stages", [])]
        took = "took" if summary.get("finished", True) else "had run for"
        section.text = (
            f"Recipe **{summary.get('recipe')}** ({summary.get('scale')}): the last invocation {took} "
            f"{summary.get('wall_seconds', 0):.0f} s wall"
            + (f"; failed at **{summary['failed']}**" if summary.get("failed") else "")
            + (" when this report (its last stage) was written" if not summary.get("finished", True) else "")
            + "."
        )
    states = {p.stem: json.loads(p.read_text()) for p in state_dir.glob("*.json")}
    names = [n for n in order if n in states] + sorted(set(states) - set(order))
    rows = [
        (n, states[n].get("status"), round(states[n].get("seconds", 0.0), 1), states[n].get("help", "")) for n in names
    ]
    total = sum(r[2] for r in rows if r[1] == "done")
    section.text += f" Sum of the stages' last successful run times: {total:.0f} s ({total / 60:.1f} min)."
    section.tables.append(Table(["stage", "status", "seconds", "what"], rows))
    if rows:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1))
        ax.barh([r[0] for r in rows][::-1], [r[2] for r in rows][::-1], color="#4c72b0")
        ax.set_xlabel("seconds (last successful run)")
        ax.set_title("Time per stage")
        section.figures.append(("stage_times.png", _png(fig), "seconds per stage"))
    return section


def percent(part: float, whole: float) -> float | None:
    """100 * part / whole to one decimal, or two significant digits below 0.1% (a small share never reads as 0)."""
    if not whole:
        return None
    value = 100 * part / whole
    return round(value, 1) if value == 0 or abs(value) >= 0.1 else float(f"{value:.2g}")


# datatrove's step types ("🔻 - FILTER", "🛢 - EXTRAC", "🫂 - DEDUPS") cut to a few letters, spelled out
_STEP_KINDS = {
    "READER": "read",
    "FILTER": "filter",
    "EXTRAC": "extract",
    "DEDUP": "dedup",
    "DEDUPS": "dedup",
    "LICENSE": "license",
    "QUALITY": "quality",
    "TOKENIZER": "count tokens",
    "INDEX": "index",
    "WRITER": "write",
    "FORMAT": "format",
    "STATS": "stats",
}


def readable_step(raw: str) -> tuple[str, str]:
    """("filter", "Language ID") from datatrove's "🔻 - FILTER: 🌍 Language ID": kind spelled out, no emoji."""
    kind_part, colon, name_part = str(raw).partition(":")
    if not colon:
        kind_part, name_part = "", kind_part
    kind_word = re.sub(r"[^A-Za-z]", "", kind_part).upper()
    kind = _STEP_KINDS.get(kind_word, kind_word.lower())
    name = " ".join(re.sub(r"^[\W_]+", "", name_part.strip()).split())
    return kind, name[:1].upper() + name[1:]


def _pipeline_groups(audit) -> list[tuple[list[Any], list[dict[str, Any]]]]:
    """(artifacts, steps) per pipeline run: the web pipeline writes web, math and multilingual with one step log."""
    groups: dict[str, tuple[list[Any], list[dict[str, Any]]]] = {}
    for artifact in audit.artifacts:
        extra = artifact.manifest.extra if isinstance(artifact.manifest.extra, dict) else {}
        steps = [s for s in extra.get("steps", []) if isinstance(s, dict)]
        if steps:
            key = json.dumps(steps, sort_keys=True, default=str)
            groups.setdefault(key, ([], steps))[0].append(artifact)
    return list(groups.values())


def funnel_rows(artifacts: list[Any], steps: list[dict[str, Any]]) -> list[tuple]:
    """(#, kind, step, in, out, dropped, % kept) in the recorded (pipeline) order, then where the survivors went."""
    rows: list[tuple] = []
    for position, step in enumerate(steps, start=1):
        stats = step.get("stats", {}) if isinstance(step.get("stats"), dict) else {}
        kind, name = readable_step(step.get("step", ""))
        written = {k.removeprefix("written_"): int(v) for k, v in stats.items() if k.startswith("written_")}
        if "total" in stats and ("forwarded" in stats or "dropped" in stats):
            total = int(stats["total"])
            forwarded = int(stats.get("forwarded", total - int(stats.get("dropped", 0))))
            kept = percent(forwarded, total)
            rows.append((position, kind, name, total, forwarded, total - forwarded, kept))
        elif written:  # a router: one row per artifact it wrote, named by the artifact's own manifest name
            routed = sum(written.values())
            by_folder = {a.path.name: a.manifest.name for a in artifacts}
            for folder in sorted(set(written) | set(by_folder), key=lambda f: -written.get(f, 0)):
                out = written.get(folder, 0)
                target = by_folder.get(folder, f"{folder}/ (no manifest)")
                share = percent(out, routed)
                rows.append((position, "route", f"to {target}", routed, out, None, share))
    return rows


def funnel_section(audit) -> Section:
    section = Section("funnel", "Data funnel: documents in and out of each step, and why they were dropped")
    for artifacts, steps in _pipeline_groups(audit):
        rows = funnel_rows(artifacts, steps)
        if not rows:
            continue
        names = ", ".join(a.manifest.name for a in sorted(artifacts, key=lambda a: -(a.manifest.stats.documents or 0)))
        section.tables.append(
            Table(
                ["#", "kind", "step", "in", "out", "dropped", "% kept"],
                rows,
                f"{names}: per-step document counts in pipeline order (# = position in the pipeline)",
            )
        )
    funnel = bool(section.tables)
    cols, reasons = _rows(
        audit,
        """SELECT step, coalesce(reason, '(no reason given)') AS reason, count(*) AS dropped
           FROM decisions WHERE NOT kept GROUP BY 1, 2 ORDER BY 1, 3 DESC""",
    )
    if not funnel and not reasons:
        section.missing = "no pipeline step counts or drop decisions in this run"
        return section
    if reasons:
        section.tables.append(Table(cols, reasons, "drop reasons (one row per dropped document in decisions/)"))
        plt = _pyplot()
        top = sorted(reasons, key=lambda r: -r[2])[:20]
        fig, ax = plt.subplots(figsize=(9, 0.3 * len(top) + 1.2))
        ax.barh([f"{s}: {r}" for s, r, _ in top][::-1], [n for *_, n in top][::-1], color="#dd8452")
        ax.set_xlabel("documents dropped")
        ax.set_title("Top drop reasons")
        section.figures.append(("drop_reasons.png", _png(fig), "documents dropped by reason"))
    return section


def level_ranges(audit) -> dict[str, str]:
    """Quality level -> its buckets, lowest level first, as the run's curation configured them (else the defaults)."""
    from curation.quality.levels import DEFAULT_LEVEL_RANGES

    ranges: dict[str, str] = {}
    for artifact in audit.artifacts:
        extra = artifact.manifest.extra if isinstance(artifact.manifest.extra, dict) else {}
        levels = (extra.get("quality_thresholds") or {}).get("levels") or {}
        for name, spec in (levels.get("levels", {}) if isinstance(levels, dict) else {}).items():
            ranges.setdefault(name, str(spec))
    return ranges or dict(DEFAULT_LEVEL_RANGES)


def sort_levels(values: list[str], order: list[str]) -> list[str]:
    """Known levels low -> high, then any others (e.g. `unscored`) by name."""
    rank = {name: i for i, name in enumerate(order)}
    return sorted(values, key=lambda v: (rank.get(v, len(rank)), v))


# groupings that name a programming language; an artifact with any of them holds code, so its `language` is code too
_CODE_GROUPINGS = ("code_language", "license_spdx")


def split_languages(rows: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    """(natural, programming) from (artifact, grouping, value, documents, tokens) rows, each largest first."""
    code_artifacts = {r[0] for r in rows if r[1] in _CODE_GROUPINGS}
    natural = [r for r in rows if r[1] == "language" and r[0] not in code_artifacts]
    with_code_language = {r[0] for r in rows if r[1] == "code_language"}  # else `language` names the code's language
    programming = [
        r
        for r in rows
        if r[1] == "code_language" or (r[1] == "language" and r[0] in code_artifacts - with_code_language)
    ]

    def by_tokens(r: tuple) -> tuple:
        return (-(r[4] or 0), r[2])

    return sorted(natural, key=by_tokens), sorted(programming, key=by_tokens)


def _share_rows(rows: list[tuple], key: int) -> list[tuple]:
    """(value, artifact, documents, tokens, % of tokens) with the share taken over `rows`."""
    total = sum(r[4] or 0 for r in rows)
    return [(r[key], r[0], r[3], r[4], percent(r[4] or 0, total)) for r in rows]


def _totals(rows: list[tuple], sort_by_tokens: bool = True) -> dict[str, int]:
    """Tokens per value summed over artifacts; in the rows' order, or largest first."""
    totals: dict[str, int] = {}
    for r in rows:
        totals[str(r[2])] = totals.get(str(r[2]), 0) + (r[4] or 0)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1])) if sort_by_tokens else totals


def levels_languages_section(audit) -> Section:
    section = Section("levels", "Quality levels and languages of curated text")
    _, rows = _rows(
        audit,
        """SELECT s.artifact, s.grouping, s.value, s.documents, s.tokens
           FROM manifest_stats s JOIN manifests m ON m.id = s.manifest_id
           WHERE m.kind = 'documents' AND s.grouping IN ('level', 'language', 'bucket', 'code_language', 'license_spdx')
           ORDER BY s.artifact, s.grouping, s.value""",
    )
    natural, programming = split_languages(rows)
    ranges = level_ranges(audit)
    levels = [r for r in rows if r[1] == "level"]
    rank = {v: i for i, v in enumerate(sort_levels(list({r[2] for r in levels}), list(ranges)))}
    levels.sort(key=lambda r: (rank[r[2]], r[0]))
    if not (levels or natural or programming):
        section.missing = "no curated artifacts with per-level or per-language stats"
        return section
    tables = [
        (["level", "buckets", "artifact", "documents", "tokens", "% tokens"],
         [(r[0], ranges.get(r[0], ""), *r[1:]) for r in _share_rows(levels, 2)],
         "quality levels, low -> high (buckets of the classifier ensemble, 0 = lowest)"),
        (["language", "artifact", "documents", "tokens", "% tokens"], _share_rows(natural, 2), "natural languages"),
        (["language", "artifact", "files", "tokens", "% tokens"], _share_rows(programming, 2),
         "programming languages (kept code)"),
    ]  # fmt: skip
    section.tables.extend(Table(columns, body, caption) for columns, body, caption in tables if body)
    panels = [
        ("tokens by quality level, low -> high", _totals(levels, sort_by_tokens=False)),
        ("tokens by natural language", _totals(natural)),
        ("tokens by programming language (kept code)", _totals(programming)),
    ]
    panels = [(title, data) for title, data in panels if data]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False, layout="constrained")
    for ax, (title, data), colour in zip(axes[0], panels, ("#55a868", "#4c72b0", "#8172b3"), strict=False):
        ax.bar(list(data), list(data.values()), color=colour)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("tokens")
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    section.figures.append(
        ("levels_languages.png", _png(fig), "tokens by quality level, natural language and programming language")
    )
    return section


def license_section(audit) -> Section:
    section = Section("licenses", "License mix of kept code")
    cols, rows = _rows(
        audit,
        """SELECT json_extract_string(metadata, '$.license_spdx') AS license, count(*) AS files, sum(tokens) AS tokens
           FROM documents WHERE json_extract_string(metadata, '$.license_spdx') IS NOT NULL
           GROUP BY 1 ORDER BY tokens DESC NULLS LAST""",
    )
    if not rows:
        section.missing = "no kept code with resolved licenses in this run"
        return section
    section.tables.append(Table(cols, rows))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.barh([r[0] for r in rows][::-1], [r[2] or 0 for r in rows][::-1], color="#8172b3")
    ax.set_xlabel("tokens kept")
    ax.set_title("Kept code by license (SPDX)")
    section.figures.append(("licenses.png", _png(fig), "kept code tokens by license"))
    return section


def mixture_section(audit) -> Section:
    section = Section("mixture", "Mixture per phase: planned vs realised")
    cols, rows = _rows(
        audit,
        """SELECT plan, phase, source, planned_tokens FROM plan_sources_by_phase ORDER BY plan, phase, source"""
        if _has_view(audit, "plan_sources_by_phase")
        else """SELECT p.plan, p.phase, s.source, NULL AS planned_tokens FROM plan_phases p, plan_sources s
                WHERE false""",
    )
    saved = audit.saved_queries()
    realised_rows: list[tuple] = []
    realised_cols: list[str] = []
    if "70_plan_vs_realised" in saved:
        realised_cols, realised_rows = _rows(audit, saved["70_plan_vs_realised"].read_text())
    if realised_rows:
        # pretraining runs first: distillation runs read the same plan and would repeat every row
        run_col = realised_cols.index("run") if "run" in realised_cols else None
        if run_col is not None:
            pretraining = [r for r in realised_rows if "pretrain" in str(r[run_col]) or "long" in str(r[run_col])]
            realised_rows = pretraining or realised_rows
        section.tables.append(Table(realised_cols, realised_rows, "tokens per source per phase, plan vs training run"))
        section.figures.append(_mixture_figure(realised_cols, realised_rows))
        return section
    cols, rows = _rows(audit, "SELECT plan, source, planned_tokens, round(epochs, 3) AS epochs FROM plan_sources")
    if not rows:
        section.missing = "no compiled plan in this run"
        return section
    section.text = "No training run has recorded realised tokens yet; the plan alone:"
    section.tables.append(Table(cols, rows))
    return section


def _has_view(audit, name: str) -> bool:
    return bool(audit.con.execute(f"SELECT 1 FROM information_schema.tables WHERE table_name = '{name}'").fetchall())


def mixture_series(cols: list[str], rows: list[tuple]) -> tuple[str, list[str], list[str], dict[str, dict[str, list]]]:
    """(unit, phases, sources, {"planned"|"realised": {source: value per phase}}), in tokens when the rows have them.

    The plan-vs-realised view carries both sequences and tokens; the chart's axis says tokens, so it plots tokens
    and falls back to sequences (and says so) only for a view that has no token columns."""
    index = {c: i for i, c in enumerate(cols)}
    phase_key = next(c for c in ("phase", "phase_name") if c in index)
    unit = "tokens" if {"planned_tokens", "realised_tokens"} <= set(index) else "sequences"
    keys = {"planned": f"planned_{unit}", "realised": f"realised_{unit}"}
    if not set(keys.values()) <= set(index):
        raise Nano2Error(f"plan-vs-realised rows have no planned/realised {unit} columns (columns: {cols})")
    phases = list(dict.fromkeys(r[index[phase_key]] for r in rows))
    sources = list(dict.fromkeys(r[index["source"]] for r in rows))
    series = {
        side: {
            source: [
                sum((r[index[key]] or 0) for r in rows if r[index[phase_key]] == phase and r[index["source"]] == source)
                for phase in phases
            ]
            for source in sources
        }
        for side, key in keys.items()
    }
    return unit, phases, sources, series


def _mixture_figure(cols: list[str], rows: list[tuple]) -> tuple[str, bytes, str]:
    """Stacked bars per phase: planned (left) and realised (right) tokens by source."""
    unit, phases, sources, series = mixture_series(cols, rows)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 * len(phases) + 3, 3.6))
    width = 0.38
    colours = plt.get_cmap("tab10")
    for j, (side, offset, hatch) in enumerate((("planned", -width / 2, ""), ("realised", width / 2, "//"))):
        bottom = [0.0] * len(phases)
        for k, source in enumerate(sources):
            values = series[side][source]
            ax.bar(
                [i + offset for i in range(len(phases))],
                values,
                width,
                bottom=bottom,
                color=colours(k % 10),
                hatch=hatch,
                edgecolor="white",
                label=source if j == 0 else None,
            )
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(len(phases)), [f"{p}\nplan | run" for p in phases])
    ax.set_ylabel(unit)
    ax.set_title(f"{unit.capitalize()} per source per phase: planned (plain) vs realised (hatched)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    return "mixture_plan_vs_realised.png", _png(fig), f"planned vs realised {unit} per phase"


LN2 = math.log(2)  # DPO's loss when the policy's reward margin over its reference is zero
FEW_STEPS = 3  # a curve with fewer logged points shows no trend


def loss_caveats(curves: list[tuple[str, list[dict[str, Any]]]]) -> list[str]:
    """What a reader must not read into the curves: a DPO loss stuck at ln 2, curves too short to show a trend."""
    caveats = []
    stuck = [name for name, rows in curves if all(abs(r["loss"] - LN2) < 1e-3 for r in rows)]
    if stuck:
        caveats.append(
            f"{', '.join(stuck)}: the loss is ln 2 = {LN2:.4f} at every logged step. DPO's loss is "
            "-log sigmoid(beta * margin) and equals ln 2 exactly when the policy's preference margin over its frozen "
            "reference is zero: the policy has not moved from the reference, so this stage changed nothing measurable."
        )
    short = [f"{name} ({len(rows)})" for name, rows in curves if len(rows) < FEW_STEPS]
    if short:
        caveats.append(f"Fewer than {FEW_STEPS} logged steps, so no trend can be read: {', '.join(short)}.")
    return caveats


def loss_section(run_dir: Path) -> Section:
    section = Section("loss", "Training curves")
    curves: list[tuple[str, list[dict[str, Any]]]] = []
    for metrics in sorted(run_dir.rglob("metrics.jsonl")):
        if any(p.startswith(".") or p == "report" for p in metrics.relative_to(run_dir).parts[:-1]):
            continue
        rows = [r for r in _read_jsonl(metrics) if isinstance(r.get("loss"), int | float) and "step" in r]
        if rows:
            curves.append((str(metrics.parent.relative_to(run_dir)), rows))
    if not curves:
        section.missing = "no training metrics (metrics.jsonl) in this run"
        return section
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    ncols = 2 if len(curves) > 1 else 1
    nrows = math.ceil(len(curves) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(11, 2.5 * nrows), squeeze=False, layout="constrained")
    any_val = any(r.get("val_loss") is not None for _, rows in curves for r in rows)
    table_rows = []
    for ax, (name, rows) in zip(axes.flat, curves, strict=False):
        steps = [r["step"] for r in rows]
        ax.plot(steps, [r["loss"] for r in rows], "o-" if len(rows) < FEW_STEPS else "-", lw=1, ms=3, label="train")
        val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
        if val:
            ax.plot([v[0] for v in val], [v[1] for v in val], "o-", ms=3, label="validation")
            ax.legend(fontsize=7)
        seen_phase = None
        for r in rows:  # phase names inside the axes, under the top edge, so they never meet the title
            phase = r.get("phase")
            if phase is not None and phase != seen_phase:
                if seen_phase is not None:
                    ax.axvline(r["step"], color="grey", ls="--", lw=0.8)
                ax.text(
                    r["step"], 0.97, f" {phase}", fontsize=7, va="top", color="#555", transform=ax.get_xaxis_transform()
                )
                seen_phase = phase
        distill = "kl" in rows[0]
        ax.set_title(f"{name}" + (" (distillation KL)" if distill else ""), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("train loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.margins(y=0.25)  # room for the phase names
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(set(steps)) == 1:
            ax.set_xlim(steps[0] - 1, steps[0] + 1)
        losses = [r["loss"] for r in rows]
        spread, level = max(losses) - min(losses), max(abs(x) for x in losses)
        if spread <= 1e-4 * max(level, 1.0):  # flat: show it flat, not a 1e-7 wiggle blown up to the full axis
            centre = (max(losses) + min(losses)) / 2
            ax.set_ylim(centre - 0.1 * max(level, 1.0), centre + 0.1 * max(level, 1.0))
        row = [name, len(rows), steps[-1], rows[0]["loss"], rows[-1]["loss"]]
        table_rows.append((*row, val[-1][1] if val else None) if any_val else tuple(row))
    for ax in list(axes.flat)[len(curves) :]:
        ax.set_visible(False)
    section.figures.append(("loss_curves.png", _png(fig), "training loss per run with phase boundaries"))
    columns = ["run", "logged steps", "last step", "first loss", "last loss"] + (["last val"] if any_val else [])
    section.tables.append(Table(columns, table_rows))
    if not any_val:
        section.text = (
            "Training loss only: no stage of this run recorded a validation loss (the pretraining loop and the "
            "post-training stages log the training loss; held-out quality is in the evaluations below)."
        )
    section.caveats.extend(loss_caveats(curves))
    return section


def _table_files(run_dir: Path, names: tuple[str, ...]) -> list[Path]:
    """Files under the run (not in dot folders, not in the report's own output)."""
    return [
        p
        for name in names
        for p in sorted(run_dir.rglob(name))
        if not any(part.startswith(".") or part == "report" for part in p.relative_to(run_dir).parts[:-1])
    ]


def _figure_name(run_dir: Path, path: Path) -> str:
    return "_".join(path.relative_to(run_dir).parts)


def typed_cell(text: str) -> Any:
    """A CSV cell as the number or flag it holds (so tables round it), else the text; '' is None."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def compress_section(run_dir: Path) -> Section:
    """Importance scores and the NAS candidate table (the paper's Table 10 analogue)."""
    import csv

    section = Section("compress", "Pruning: importance and the architecture search")
    found = False
    for path in _table_files(run_dir, ("candidates.csv",)):
        with path.open(newline="") as f:
            reader = list(csv.reader(f))
        if reader:
            header, rows = reader[0], [[typed_cell(c) for c in row] for row in reader[1:]]
            if "feasible" in header:  # feasible and ranked candidates first, then the rest
                f, r = header.index("feasible"), header.index("rank") if "rank" in header else None
                rows.sort(key=lambda row: (row[f] is not True, row[r] if r is not None and row[r] is not None else 1e9))
            used = [i for i in range(len(header)) if any(row[i] is not None for row in rows if i < len(row))]
            rows = [[row[i] if i < len(row) else None for i in used] for row in rows]
            caption = f"NAS candidates ({path.relative_to(run_dir)}; {len(rows)} in all, feasible first"
            caption += ", first 40 shown)" if len(rows) > 40 else ")"
            section.tables.append(Table([header[i] for i in used], rows[:40], caption))
            found = True
    for path in _table_files(run_dir, ("*.png",)):
        rel = path.relative_to(run_dir)
        if rel.parts and rel.parts[0] == "compress" and "distill" not in rel.parts:
            section.figures.append((_figure_name(run_dir, path), path.read_bytes(), str(rel)))
            found = True
    if not found:
        section.missing = "no importance scores or search results in this run"
    return section


MIN_ITEMS = 30  # fewer items than this and a score says little (a 95% interval wider than about +-15 points)
WIDE_INTERVAL = 0.2  # an interval wider than 20 points cannot separate two models that differ by less


def _interval(low: Any, high: Any) -> str:
    if low is None or high is None:
        return ""
    return f"{low:.2f}-{high:.2f}"


def score_caveat(n: Any, low: Any, high: Any) -> str:
    """Why a score must not be read at face value ('' when it can be)."""
    reasons = []
    if isinstance(n, int) and n < MIN_ITEMS:
        reasons.append(f"n={n} < {MIN_ITEMS}")
    if isinstance(low, int | float) and isinstance(high, int | float) and high - low > WIDE_INTERVAL:
        reasons.append(f"CI {100 * (high - low):.0f} pts wide")
    return "; ".join(reasons)


def _model_order(label: str) -> tuple[int, str]:
    return ({"parent": 0, "child": 1}.get(label, 2), label)


def eval_comparison(summaries: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[tuple]]:
    """One row per (benchmark, metric) with every model side by side (parent first, then child, then the rest):
    score and 95% interval per model, the child-minus-parent difference, and a caveat where n is too small."""
    summaries = sorted(summaries, key=lambda s: _model_order(s[0]))
    labels = [label for label, _ in summaries]
    by_model = {
        label: {(b.get("name"), b.get("metric")): b for b in body.get("benchmarks", []) if isinstance(b, dict)}
        for label, body in summaries
    }
    keys = list(dict.fromkeys(k for label in labels for k in by_model[label]))
    columns = ["benchmark", "metric", "n"]
    for label in labels:
        columns += [f"{label}", f"{label} 95% CI"]
    compare = "parent" in labels and "child" in labels
    if compare:
        columns.append("child - parent")
    columns.append("caveat")
    rows = []
    for key in keys:
        benches = [by_model[label].get(key, {}) for label in labels]
        ns = [b.get("n") for b in benches if b]
        n = ns[0] if len(set(ns)) == 1 else " / ".join(str(x) for x in ns)
        row: list[Any] = [key[0], key[1], n]
        caveats = []
        for b in benches:
            row += [b.get("score"), _interval(b.get("ci_low"), b.get("ci_high"))]
            caveats.append(score_caveat(b.get("n"), b.get("ci_low"), b.get("ci_high")) if b else "")
        if compare:
            parent, child = by_model["parent"].get(key, {}), by_model["child"].get(key, {})
            both = isinstance(parent.get("score"), int | float) and isinstance(child.get("score"), int | float)
            row.append(round(child["score"] - parent["score"], 4) if both else None)
        row.append(next((c for c in caveats if c), ""))
        rows.append(tuple(row))
    return columns, rows


def _small_sample_caveat(rows: list[tuple], what: str) -> str | None:
    flagged = [r for r in rows if r[-1]]
    if not flagged:
        return None
    return (
        f"{len(flagged)} of {len(rows)} {what} rest on fewer than {MIN_ITEMS} items or have 95% intervals wider than "
        f"{100 * WIDE_INTERVAL:.0f} points (see the caveat column): they cannot be told apart from each other or from "
        "chance. Evaluate more items (raise `--limit`) before reading anything into them."
    )


def evals_section(run_dir: Path) -> Section:
    section = Section("evals", "Evaluations: parent vs child, thinking budget, throughput")
    summaries = []
    aliases: dict[str, str] = {}  # checkpoint name -> the role its eval stage gives it ("final" -> "parent")
    for path in _table_files(run_dir, ("summary.json",)):
        try:
            body = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(body, dict) and body.get("benchmarks"):
            model = body.get("model") or body.get("checkpoint")
            label = path.parent.name  # the eval stage's folder: evals/parent, evals/child
            summaries.append((label, body))
            if model and Path(str(model)).name != label:
                aliases[Path(str(model)).name] = label
                section.text += f" {label} = checkpoint `{Path(str(model)).name}`."
    if summaries:
        columns, rows = eval_comparison(summaries)
        section.tables.append(Table(columns, rows, "score per benchmark, models side by side (95% intervals)"))
        caveat = _small_sample_caveat(rows, "benchmark scores")
        if caveat:
            section.caveats.append(caveat)
    budget_rows = _budget_rows(run_dir)
    if budget_rows:
        section.tables.append(
            Table(
                [
                    "model",
                    "budget",
                    "n",
                    "accuracy",
                    "95% CI",
                    "mean tokens",
                    "thinking tokens",
                    "forced close",
                    "caveat",
                ],
                budget_rows,
                "accuracy and length vs thinking budget",
            )
        )
        caveat = _small_sample_caveat(budget_rows, "budget points")
        if caveat:
            section.caveats.append(caveat)
    throughput = _throughput_rows(run_dir, aliases)
    if throughput:
        columns, rows, note = throughput
        section.tables.append(Table(columns, rows, "decode throughput (tokens/s) per input/output length cell"))
        if note:
            section.caveats.append(note)
    eval_figures = [p for p in _table_files(run_dir, ("*.png",)) if "eval" in str(p.relative_to(run_dir))]
    for path in sorted(eval_figures, key=lambda p: _model_order(p.parent.name)):
        rel = path.relative_to(run_dir)
        section.figures.append((_figure_name(run_dir, path), path.read_bytes(), str(rel)))
    section.figure_columns = 2
    section.text = section.text.strip()
    if not summaries and not budget_rows and not throughput and not section.figures:
        section.missing = "no evaluation results in this run"
    return section


def _budget_rows(run_dir: Path) -> list[tuple]:
    rows = []
    for path in _table_files(run_dir, ("budget.json",)):
        try:
            body = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        for b in body.get("budgets", []) if isinstance(body, dict) else []:
            rows.append(
                (
                    body.get("model"),
                    b.get("budget"),
                    b.get("n"),
                    b.get("accuracy"),
                    _interval(b.get("ci_low"), b.get("ci_high")),
                    b.get("mean_tokens"),
                    b.get("mean_thinking_tokens"),
                    b.get("forced_close_rate"),
                    score_caveat(b.get("n"), b.get("ci_low"), b.get("ci_high")),
                )
            )
    return rows


BUSY_MACHINE = 10.0  # % of the CPUs used by other processes above which a timing is noted as disturbed


def _throughput_rows(run_dir: Path, aliases: dict[str, str]) -> tuple[list[str], list[tuple], str | None] | None:
    """Tokens/s per length cell, one column per model named by its role (parent, child), with a busy-machine note."""
    for path in _table_files(run_dir, ("throughput.json",)):
        try:
            body = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if not isinstance(body, dict) or not body.get("cells"):
            continue
        labels = [m.get("label") for m in body.get("models", []) if isinstance(m, dict)]
        params = {m.get("label"): m.get("parameters") for m in body.get("models", []) if isinstance(m, dict)}
        names = [aliases.get(str(label), str(label)) for label in labels]
        columns = ["input len", "output len"]
        columns += [
            f"{name} tok/s ({_fmt(params.get(label))} params)" for name, label in zip(names, labels, strict=True)
        ]
        ratio_of = str(body.get("ratio_of", ""))
        for label, name in zip(labels, names, strict=True):
            ratio_of = re.sub(rf"\b{re.escape(str(label))}\b", name, ratio_of)
        columns.append(f"ratio ({ratio_of})")
        rows = [
            (
                c.get("isl"),
                c.get("osl"),
                *[(c.get("tokens_per_s") or {}).get(label) for label in labels],
                c.get("ratio"),
            )
            for c in body["cells"]
        ]
        machine = body.get("machine") or {}
        foreign = machine.get("foreign_cpu_percent")
        note = None
        if isinstance(foreign, int | float) and foreign > BUSY_MACHINE:
            note = (
                f"Throughput was measured while other processes used {foreign:.0f}% of the machine's CPUs "
                f"({machine.get('cpus')} cores, load {machine.get('load_average', 0):.1f}): the absolute tokens/s are "
                "low and noisy; only the ratio measured in the same run means anything."
            )
        return columns, rows, note
    return None


def lineage_section(audit) -> Section:
    section = Section("lineage", "Lineage of the final checkpoints")
    saved = audit.saved_queries()
    cols, rows = _rows(audit, saved["80_checkpoint_lineage"].read_text())
    if not rows:
        section.missing = "no checkpoint with recorded inputs in this run"
        return section
    section.text = "Every artifact each final checkpoint descends from, following manifest inputs (hops = distance)."
    section.tables.append(Table(cols, rows))
    return section


def warnings_section(audit) -> Section:
    section = Section("warnings", "Audit warnings")
    cols, rows = _rows(audit, "SELECT * FROM audit_warnings")
    stale_cols, stale = _rows(
        audit,
        "SELECT artifact, input_path, status FROM manifest_inputs WHERE status LIKE 'stale%' OR status LIKE 'input%'",
    )
    if rows:
        section.tables.append(Table(cols, rows))
    if stale:
        section.tables.append(Table(stale_cols, stale, "inputs that changed or are outside the run"))
    if not rows and not stale:
        section.text = "None: every manifest input resolves to the artifact that is there now."
    return section


# --------------------------------------------------------------------------------------------------- rendering

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
nav a { margin-right: 0.8rem; font-size: 0.9rem; }
.table-wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.8rem; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: 0.15rem 0.4rem; text-align: left; overflow-wrap: break-word; }
table.wide { font-size: 0.7rem; } table.wide th, table.wide td { padding: 0.1rem 0.25rem; }
th { vertical-align: bottom; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; } th { background: #f4f4f4; }
p.caption { color: #555; font-size: 0.85rem; margin: 0.8rem 0 0; }
.figures { display: grid; grid-template-columns: repeat(var(--columns, 1), minmax(0, 1fr)); gap: 0.8rem; }
figure.span { grid-column: 1 / -1; }
figure { margin: 0.6rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
.missing { color: #8a6d3b; background: #fcf8e3; padding: 0.4rem 0.7rem; border-radius: 4px; }
.caveat { color: #7a2e0e; background: #fdecea; border-left: 4px solid #d9534f; padding: 0.4rem 0.7rem;
          border-radius: 4px; margin: 0.6rem 0; }
.meta { color: #666; font-size: 0.9rem; }
"""


def _breakable(text: str) -> str:
    """Escaped text with break opportunities after / and _ so long paths and names wrap instead of widening tables."""
    return re.sub(r"([/_])", r"\1<wbr>", html.escape(text))


def _html_table(table: Table, max_rows: int = 400) -> str:
    head = "".join(f"<th>{_breakable(str(c))}</th>" for c in table.columns)
    body = []
    for row in table.rows[:max_rows]:
        cells = []
        for v in row:
            numeric = isinstance(v, int | float) and not isinstance(v, bool)
            cells.append(
                f"<td class='num'>{html.escape(_fmt(v))}</td>" if numeric else f"<td>{_breakable(_fmt(v))}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class='meta'>{len(table.rows) - max_rows} more rows not shown</p>" if len(table.rows) > max_rows else ""
    caption = f"<p class='caption'>{html.escape(table.caption)}</p>" if table.caption else ""
    wide = " class='wide'" if len(table.columns) > 10 else ""
    table_html = f"<table{wide}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f"{caption}<div class='table-wrap'>{table_html}</div>{more}"


def _md_table(table: Table, max_rows: int = 60) -> str:
    lines = []
    if table.caption:
        lines.append(f"*{table.caption}*\n")
    lines.append("| " + " | ".join(str(c) for c in table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    for row in table.rows[:max_rows]:
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
    if len(table.rows) > max_rows:
        lines.append(f"\n({len(table.rows) - max_rows} more rows in report.html)")
    return "\n".join(lines)


def _aspect(png: bytes) -> float:
    """Width / height of a PNG, from its IHDR header."""
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n":
        return 1.0
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    return width / height if height else 1.0


def render_html(title: str, sections: list[Section], meta: str) -> str:
    nav = "".join(f'<a href="#{s.key}">{html.escape(s.title.split(":")[0])}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(meta)}</p><nav>{nav}</nav>",
    ]
    for s in sections:
        parts.append(f"<section id='{s.key}'><h2>{html.escape(s.title)}</h2>")
        if s.missing:
            parts.append(f"<p class='missing'>{html.escape(s.missing)}</p>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text).replace('**', '')}</p>")
        for caveat in s.caveats:
            parts.append(f"<p class='caveat'><strong>Caveat:</strong> {html.escape(caveat)}</p>")
        if s.figures:
            parts.append(f"<div class='figures' style='--columns: {s.figure_columns}'>")
        for name, png, alt in s.figures:
            data = base64.b64encode(png).decode()
            span = " class='span'" if s.figure_columns > 1 and _aspect(png) > 1.6 else ""  # wide plots get a row
            parts.append(f"<figure{span}><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>")
            parts.append(f"<figcaption class='meta'>{html.escape(name)}</figcaption></figure>")
        if s.figures:
            parts.append("</div>")
        parts.extend(_html_table(t) for t in s.tables)
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(title: str, sections: list[Section], meta: str) -> str:
    out = [f"# {title}", "", meta, ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        if s.missing:
            out += [f"_{s.missing}_", ""]
        if s.text:
            out += [s.text, ""]
        for caveat in s.caveats:
            out += [f"> **Caveat:** {caveat}", ""]
        for name, _, alt in s.figures:
            out += [f"![{alt}](figures/{name})", ""]
        for t in s.tables:
            out += [_md_table(t), ""]
    return "\n".join(out)


SectionBuilder = Callable[[], Section]


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write `<out>/report.html` (self-contained) and `<out>/report.md` (+ figures/); return both paths."""
    from nano2.app.audit import Audit

    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise Nano2Error(f"{run_dir}: run directory not found")
    out = Path(out_dir).resolve() if out_dir else run_dir / "report"
    audit = Audit(run_dir)
    builders: list[SectionBuilder] = [
        lambda: stage_section(run_dir),
        lambda: funnel_section(audit),
        lambda: levels_languages_section(audit),
        lambda: license_section(audit),
        lambda: mixture_section(audit),
        lambda: loss_section(run_dir),
        lambda: compress_section(run_dir),
        lambda: evals_section(run_dir),
        lambda: lineage_section(audit),
        lambda: warnings_section(audit),
    ]
    sections = [build() for build in builders]
    title = f"nano2 recipe report: {run_dir.name}"
    meta = f"run directory {run_dir}; {len(audit.artifacts)} artifacts; written {time.strftime('%Y-%m-%d %H:%M:%S')}"
    figures = out / "figures"
    if figures.is_dir():  # figures of an earlier report of this run may no longer exist
        for stale in figures.glob("*.png"):
            stale.unlink()
    figures.mkdir(parents=True, exist_ok=True)
    for s in sections:
        for name, png, _ in s.figures:
            (figures / name).write_bytes(png)
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(render_html(title, sections, meta), encoding="utf-8")
    md_path.write_text(render_markdown(title, sections, meta), encoding="utf-8")
    return html_path, md_path


def report_command(
    run_dir: Path = typer.Argument(..., help="A run directory made by `nano2 run` (or any data root)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Report directory (default RUN_DIR/report)."),
) -> None:
    """Write a self-contained HTML report (plots embedded) and a Markdown summary of a run."""
    from nano2.console import make_console

    html_path, md_path = build_report(run_dir, output)
    make_console().print(f"wrote {html_path} and {md_path}")


COMMAND = report_command  # mounted by nano2/app/cli.py as `nano2 report`
