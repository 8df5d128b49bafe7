"""Human views of plans: the rich table, a spec-to-spec diff, and the stacked-bar picture of the phases."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from mixtures.plan import Plan
from mixtures.spec import MixtureSpec
from nano2.units import format_count


def plan_table(plan: Plan) -> Table:
    """Phase, source, weight, tokens, sequences, cumulative epochs; a subtotal per phase and a totals row."""
    table = Table(
        title=(
            f"{plan.name}: {plan.total_steps:,} steps x {plan.global_batch_size} x {plan.seq_len} = "
            f"{plan.total_tokens:,} tokens ({format_count(plan.total_tokens)}; "
            f"asked {format_count(plan.requested_tokens)})"
        ),
        title_justify="left",
    )
    for col, justify in (
        ("phase", "left"),
        ("steps", "right"),
        ("source", "left"),
        ("weight", "right"),
        ("tokens", "right"),
        ("sequences", "right"),
        ("epochs so far", "right"),
        ("max", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    caps = {s.name: s.max_epochs for s in plan.sources}
    for phase in plan.phases:
        first = True
        for alloc in phase.sources:
            table.add_row(
                phase.name if first else "",
                f"{phase.start_step:,}-{phase.end_step:,}" if first else "",
                alloc.name,
                f"{alloc.weight:.4g}",
                f"{alloc.tokens:,}",
                f"{alloc.sequences:,}",
                f"{alloc.epochs:.3f}",
                f"{caps[alloc.name]:g}",
            )
            first = False
        table.add_row(
            "",
            "",
            f"[bold]{phase.name} total[/]",
            "1",
            f"[bold]{phase.tokens:,}[/]",
            f"[bold]{phase.sequences:,}[/]",
            "",
            "",
            end_section=True,
        )
    table.add_row(
        "[bold]all[/]",
        f"{plan.total_steps:,}",
        "",
        "",
        f"[bold]{plan.total_tokens:,}[/]",
        f"[bold]{plan.total_steps * plan.global_batch_size:,}[/]",
        "",
        "",
    )
    return table


@dataclass(frozen=True)
class DiffRow:
    phase: str
    source: str
    weight_a: float | None
    weight_b: float | None
    tokens_a: int | None
    tokens_b: int | None


def diff_rows(spec_a: MixtureSpec, spec_b: MixtureSpec, plan_a: Plan | None, plan_b: Plan | None) -> list[DiffRow]:
    """One row per (phase, source) whose weight or planned tokens differ between two specs."""

    def tokens(plan: Plan | None, phase: str, source: str) -> int | None:
        if plan is None:
            return None
        for ph in plan.phases:
            if ph.name == phase:
                return next((a.tokens for a in ph.sources if a.name == source), 0)
        return None

    phases_a = {p.name: p for p in spec_a.phases}
    phases_b = {p.name: p for p in spec_b.phases}
    order = [p.name for p in spec_a.phases] + [p.name for p in spec_b.phases if p.name not in phases_a]
    rows = []
    for phase in order:
        wa = phases_a[phase].weights if phase in phases_a else {}
        wb = phases_b[phase].weights if phase in phases_b else {}
        for source in sorted(set(wa) | set(wb)):
            row = DiffRow(
                phase,
                source,
                wa.get(source),
                wb.get(source),
                tokens(plan_a, phase, source) if phase in phases_a else None,
                tokens(plan_b, phase, source) if phase in phases_b else None,
            )
            if (row.weight_a, row.tokens_a) != (row.weight_b, row.tokens_b):
                rows.append(row)
    return rows


def spec_changes(spec_a: MixtureSpec, spec_b: MixtureSpec) -> list[tuple[str, str, str]]:
    """Top-level and per-source settings that differ: (field, before, after)."""
    changes = []
    for field in ("name", "seq_len", "global_batch_size", "total_tokens"):
        a, b = getattr(spec_a, field), getattr(spec_b, field)
        if a != b:
            changes.append((field, str(a), str(b)))
    pa, pb = {p.name: p.until for p in spec_a.phases}, {p.name: p.until for p in spec_b.phases}
    for phase in sorted(set(pa) | set(pb)):
        if pa.get(phase) != pb.get(phase):
            changes.append((f"phases.{phase}.until", str(pa.get(phase, "-")), str(pb.get(phase, "-"))))
    for name in sorted(set(spec_a.sources) | set(spec_b.sources)):
        a = spec_a.sources.get(name)
        b = spec_b.sources.get(name)
        da = a.model_dump(exclude_none=True) if a else None
        db = b.model_dump(exclude_none=True) if b else None
        if da != db:
            changes.append((f"sources.{name}", str(da or "-"), str(db or "-")))
    return changes


def diff_table(rows: list[DiffRow], label_a: str, label_b: str) -> Table:
    table = Table(title=f"mixture diff: {label_a} -> {label_b}", title_justify="left")
    for col in ("phase", "source", "weight A", "weight B", "Δ weight", "tokens A", "tokens B", "Δ tokens"):
        table.add_column(col, justify="left" if col in ("phase", "source") else "right")

    def fmt_w(w: float | None) -> str:
        return "-" if w is None else f"{w:.4g}"

    def fmt_t(t: int | None) -> str:
        return "-" if t is None else f"{t:,}"

    for r in rows:
        dw = (r.weight_b or 0.0) - (r.weight_a or 0.0)
        dt = None if r.tokens_a is None and r.tokens_b is None else (r.tokens_b or 0) - (r.tokens_a or 0)
        table.add_row(
            r.phase,
            r.source,
            fmt_w(r.weight_a),
            fmt_w(r.weight_b),
            f"{dw:+.4g}",
            fmt_t(r.tokens_a),
            fmt_t(r.tokens_b),
            "-" if dt is None else f"{dt:+,}",
        )
    return table


def plot_plan(plan: Plan, out: str | Path) -> Path:
    """Two panels: each phase's mixture as 100% stacked bars, and the tokens each source gets per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.name for s in plan.sources]
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    colors = {n: cmap(i % cmap.N) for i, n in enumerate(names)}
    labels = [f"{p.name}\n{format_count(p.tokens)} tok" for p in plan.phases]
    fig, (ax_share, ax_tokens) = plt.subplots(1, 2, figsize=(12, 6), gridspec_kw={"width_ratios": [1, 1]})
    for ax, value, ylabel in (
        (ax_share, lambda a: 100.0 * a.share, "share of phase sequences (%)"),
        (ax_tokens, lambda a: a.tokens / 1e9, "tokens (billions)"),
    ):
        bottoms = [0.0] * len(plan.phases)
        for name in names:
            heights = []
            for phase in plan.phases:
                alloc = next((a for a in phase.sources if a.name == name), None)
                heights.append(value(alloc) if alloc is not None else 0.0)
            ax.bar(labels, heights, bottom=bottoms, color=colors[name], label=name, edgecolor="white", linewidth=0.5)
            if ax is ax_share:
                for i, h in enumerate(heights):
                    if h >= 4:
                        ax.text(i, bottoms[i] + h / 2, f"{h:.0f}%", ha="center", va="center", fontsize=7)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        ax.set_ylabel(ylabel)
        ax.spines[["top", "right"]].set_visible(False)
    ax_share.set_ylim(0, 100)
    ax_share.set_title("mixture per phase")
    ax_tokens.set_title("tokens per phase and source")
    handles, legend_labels = ax_share.get_legend_handles_labels()
    fig.legend(handles[::-1], legend_labels[::-1], loc="center right", fontsize=8, frameon=False)
    fig.suptitle(f"{plan.name}: {format_count(plan.total_tokens)} tokens, {plan.total_steps:,} steps")
    fig.tight_layout(rect=(0, 0, 0.84, 0.95))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
