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


def funnel_section(audit) -> Section:
    section = Section("funnel", "Data funnel: documents in and out of each step, and why they were dropped")
    funnel = []
    for artifact in audit.artifacts:
        for step in artifact.manifest.extra.get("steps", []) if isinstance(artifact.manifest.extra, dict) else []:
            stats = step.get("stats", {}) if isinstance(step, dict) else {}
            if "total" in stats and ("forwarded" in stats or "dropped" in stats):
                total = int(stats["total"])
                forwarded = int(stats.get("forwarded", total - int(stats.get("dropped", 0))))
                name = " ".join("".join(ch for ch in str(step.get("step", "")) if ch.isascii()).split()).strip(" -:")
                funnel.append((artifact.manifest.name, name, total, forwarded, total - forwarded))
    # artifacts written by one pipeline run (web: web, math, multilingual) share its step counts: show them once
    merged: dict[tuple, str] = {}
    for owner, *counts in funnel:
        merged.setdefault(tuple(counts), owner)
    funnel = [(owner, *counts) for counts, owner in merged.items()]
    if funnel:
        section.tables.append(
            Table(["artifact", "step", "in", "out", "dropped"], funnel, "per-step counts recorded by the pipelines")
        )
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


def levels_languages_section(audit) -> Section:
    section = Section("levels", "Quality levels and languages of curated text")
    cols, rows = _rows(
        audit,
        """SELECT s.artifact, s.grouping, s.value, s.documents, s.tokens
           FROM manifest_stats s JOIN manifests m ON m.id = s.manifest_id
           WHERE m.kind = 'documents' AND s.grouping IN ('level', 'language', 'bucket')
           ORDER BY s.grouping, s.artifact, s.tokens DESC NULLS LAST""",
    )
    if not rows:
        section.missing = "no curated artifacts with per-level or per-language stats"
        return section
    section.tables.append(Table(cols, rows))
    plt = _pyplot()
    groupings = [g for g in ("level", "language") if any(r[1] == g for r in rows)]
    fig, axes = plt.subplots(1, len(groupings), figsize=(5 * len(groupings), 3.4), squeeze=False)
    for ax, grouping in zip(axes[0], groupings, strict=True):
        data = [(r[2], r[4] or 0) for r in rows if r[1] == grouping]
        ax.bar([d[0] for d in data], [d[1] for d in data], color="#55a868")
        ax.set_title(f"tokens by {grouping}")
        ax.tick_params(axis="x", rotation=45)
    section.figures.append(("levels_languages.png", _png(fig), "tokens by quality level and language"))
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


def _mixture_figure(cols: list[str], rows: list[tuple]) -> tuple[str, bytes, str]:
    """Stacked bars per phase: planned (left) and realised (right) tokens by source."""
    index = {c: i for i, c in enumerate(cols)}
    phase_key = next(c for c in ("phase", "phase_name") if c in index)
    planned_key = next(c for c in cols if c.startswith("planned"))
    realised_key = next(c for c in cols if c.startswith("realised") or c.startswith("realized"))
    phases = list(dict.fromkeys(r[index[phase_key]] for r in rows))
    sources = list(dict.fromkeys(r[index["source"]] for r in rows))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 * len(phases) + 3, 3.6))
    width = 0.38
    colours = plt.get_cmap("tab10")
    for j, (key, offset, hatch) in enumerate(((planned_key, -width / 2, ""), (realised_key, width / 2, "//"))):
        bottom = [0.0] * len(phases)
        for k, source in enumerate(sources):
            values = [
                sum((r[index[key]] or 0) for r in rows if r[index[phase_key]] == p and r[index["source"]] == source)
                for p in phases
            ]
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
    ax.set_ylabel("tokens")
    ax.set_title("Tokens per source per phase: planned (plain) vs realised (hatched)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    return "mixture_plan_vs_realised.png", _png(fig), "planned vs realised tokens per phase"


def loss_section(run_dir: Path) -> Section:
    section = Section("loss", "Training curves")
    curves = []
    for metrics in sorted(run_dir.rglob("metrics.jsonl")):
        if any(p.startswith(".") for p in metrics.relative_to(run_dir).parts[:-1]):
            continue
        rows = [r for r in _read_jsonl(metrics) if "loss" in r and "step" in r]
        if rows:
            curves.append((metrics.parent, rows))
    if not curves:
        section.missing = "no training metrics (metrics.jsonl) in this run"
        return section
    plt = _pyplot()
    fig, axes = plt.subplots(len(curves), 1, figsize=(8, 2.4 * len(curves)), squeeze=False)
    table_rows = []
    for ax, (directory, rows) in zip(axes[:, 0], curves, strict=True):
        name = str(directory.relative_to(run_dir))
        steps = [r["step"] for r in rows]
        ax.plot(steps, [r["loss"] for r in rows], lw=1, label="train loss")
        val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
        if val:
            ax.plot([v[0] for v in val], [v[1] for v in val], "o-", ms=3, label="validation loss")
        seen_phase = None
        for r in rows:
            phase = r.get("phase")
            if phase is not None and phase != seen_phase:
                if seen_phase is not None:
                    ax.axvline(r["step"], color="grey", ls="--", lw=0.8)
                ax.text(r["step"], ax.get_ylim()[1], f" {phase}", fontsize=7, va="top")
                seen_phase = phase
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
        first, last = rows[0]["loss"], rows[-1]["loss"]
        table_rows.append((name, len(rows), steps[-1], round(first, 4), round(last, 4), val[-1][1] if val else None))
    section.figures.append(("loss_curves.png", _png(fig), "loss curves with phase boundaries"))
    section.tables.append(
        Table(["run", "logged steps", "last step", "first loss", "last loss", "last val"], table_rows)
    )
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


def compress_section(run_dir: Path) -> Section:
    """Importance scores and the NAS candidate table (the paper's Table 10 analogue)."""
    section = Section("compress", "Pruning: importance and the architecture search")
    found = False
    for path in _table_files(run_dir, ("candidates.csv",)):
        import csv

        with path.open() as f:
            reader = list(csv.reader(f))
        if reader:
            header, rows = reader[0], reader[1:]
            if "feasible" in header:  # feasible and ranked candidates first, then the rest
                f, r = header.index("feasible"), header.index("rank") if "rank" in header else None
                rows.sort(key=lambda row: (row[f] != "True", int(row[r]) if r is not None and row[r] else 10**9))
            caption = f"NAS candidates ({path.relative_to(run_dir)}; {len(rows)} in all, feasible first)"
            section.tables.append(Table(header, rows[:40], caption))
            found = True
    for path in _table_files(run_dir, ("*.png",)):
        rel = path.relative_to(run_dir)
        if rel.parts and rel.parts[0] == "compress" and "distill" not in rel.parts:
            section.figures.append((_figure_name(run_dir, path), path.read_bytes(), str(rel)))
            found = True
    if not found:
        section.missing = "no importance scores or search results in this run"
    return section


def evals_section(run_dir: Path) -> Section:
    section = Section("evals", "Evaluations: parent vs child, thinking budget, throughput")
    summaries = _table_files(run_dir, ("summary.json",))
    rows = []
    for path in summaries:
        try:
            body = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        model = body.get("model") or body.get("checkpoint") or str(path.parent.relative_to(run_dir))
        for bench in body.get("benchmarks", []):
            rows.append(
                (
                    Path(str(model)).name,
                    bench.get("name"),
                    bench.get("n"),
                    bench.get("metric"),
                    bench.get("score"),
                    bench.get("ci_low"),
                    bench.get("ci_high"),
                )
            )
    if rows:
        section.tables.append(Table(["model", "benchmark", "n", "metric", "score", "ci low", "ci high"], rows))
    for path in _table_files(run_dir, ("*.png",)):
        rel = path.relative_to(run_dir)
        if "eval" in str(rel):
            section.figures.append((_figure_name(run_dir, path), path.read_bytes(), str(rel)))
    if not rows and not section.figures:
        section.missing = "no evaluation results in this run"
    return section


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
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f4f4f4; }
caption { caption-side: top; text-align: left; color: #555; font-size: 0.85rem; padding-bottom: 0.2rem; }
figure { margin: 0.6rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
.missing { color: #8a6d3b; background: #fcf8e3; padding: 0.4rem 0.7rem; border-radius: 4px; }
.meta { color: #666; font-size: 0.9rem; }
"""


def _html_table(table: Table, max_rows: int = 400) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for row in table.rows[:max_rows]:
        cells = []
        for v in row:
            cls = ' class="num"' if isinstance(v, int | float) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{html.escape(_fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p class='meta'>{len(table.rows) - max_rows} more rows not shown</p>" if len(table.rows) > max_rows else ""
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


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
        for name, png, alt in s.figures:
            data = base64.b64encode(png).decode()
            parts.append(f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>")
            parts.append(f"<figcaption class='meta'>{html.escape(name)}</figcaption></figure>")
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
