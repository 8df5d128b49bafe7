"""`nano2 mix`: validate, plan, diff, export and plot declared phase mixtures."""

from __future__ import annotations

from pathlib import Path

import typer

from mixtures.plan import Plan
from mixtures.spec import MixtureSpec, load_spec
from nano2.console import make_console
from nano2.errors import Nano2Error
from nano2.manifest import (
    MANIFEST_NAME,
    ArtifactKind,
    FileEntry,
    InputRef,
    OutputStats,
    current_command,
    hash_file,
    read_manifest,
    recorded_path,
    write_manifest,
)
from nano2.units import format_count

app = typer.Typer(help="Declared phase mixtures compiled into exact token plans.", no_args_is_help=True)

DataRoot = typer.Option(Path("."), "--data-root", "-d", help="Where source `path:` entries are resolved.")


def _compile(spec_path: Path, data_root: Path) -> tuple[MixtureSpec, Plan]:
    from mixtures import compile_spec_file, left_out_sources

    spec, plan = compile_spec_file(spec_path, data_root)
    for name in left_out_sources(spec_path, spec):
        make_console(stderr=True).print(
            f"[yellow]note[/]: optional source {name!r} has no tokens under {data_root}; left out of every phase"
        )
    return spec, plan


@app.command("validate")
def validate(spec: Path = typer.Argument(..., help="Mixture spec (YAML)."), data_root: Path = DataRoot) -> None:
    """Check a spec: its shape, its sources' token counts and that it compiles within every epoch cap."""
    _, plan = _compile(spec, data_root)
    make_console().print(
        f"ok: {spec}: {plan.name}: {len(plan.phases)} phases, {len(plan.sources)} sources, "
        f"{plan.total_steps:,} steps, {plan.total_tokens:,} tokens"
    )


@app.command("plan")
def plan_cmd(
    spec: Path = typer.Argument(..., help="Mixture spec (YAML)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the plan JSON here (manifest beside it)."),
    data_root: Path = DataRoot,
    quiet: bool = typer.Option(False, "--quiet", help="Do not print the table."),
) -> None:
    """Compile a spec into an exact plan and show it as a table (phase, source, weight, tokens, sequences, epochs)."""
    mixture, plan = _compile(spec, data_root)
    if not quiet:
        from mixtures.render import plan_table

        make_console().print(plan_table(plan))
    if output is not None:
        write_plan(plan, mixture, spec, output, data_root)
        make_console().print(f"wrote {output} and {output.parent / MANIFEST_NAME}")


def write_plan(plan: Plan, spec: MixtureSpec, spec_path: Path, output: Path, data_root: Path) -> None:
    """Write the plan JSON and a `plan` manifest beside it (refusing to overwrite another artifact's manifest)."""
    out_dir = output.parent
    if (out_dir / MANIFEST_NAME).exists():
        existing = read_manifest(out_dir)
        if existing.kind != ArtifactKind.PLAN:
            raise Nano2Error(
                f"{out_dir}: already holds a '{existing.kind}' artifact ({existing.name}); "
                "write the plan to its own directory"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    output.write_text(plan.to_json(), encoding="utf-8")
    inputs = [InputRef(path=recorded_path(spec_path), content_hash=hash_file(spec_path))]
    for s in plan.sources:
        if s.manifest_id is not None:
            inputs.append(InputRef(path=recorded_path(Path(data_root) / s.origin), manifest_id=s.manifest_id))
    stats = OutputStats(
        tokens=plan.total_tokens,
        by={
            "source": {s.name: {"tokens": s.planned_tokens} for s in plan.sources},
            "phase": {p.name: {"tokens": p.tokens} for p in plan.phases},
        },
    )
    write_manifest(
        out_dir,
        kind=ArtifactKind.PLAN,
        name=plan.name,
        command=current_command(),
        config=spec,
        config_path=str(spec_path),
        inputs=inputs,
        stats=stats,
        files=[FileEntry(path=output.name, bytes=output.stat().st_size, sha256=hash_file(output))],
        # the data root the plan's sources are relative to: `nano2 audit` checks them there, not under its own root
        extra={"total_steps": plan.total_steps, "spec_hash": plan.spec_hash, "data_root": recorded_path(data_root)},
    )


@app.command("diff")
def diff(
    spec_a: Path = typer.Argument(..., help="The spec before."),
    spec_b: Path = typer.Argument(..., help="The spec after."),
    data_root: Path = DataRoot,
) -> None:
    """What changed between two specs, per phase and source, in weights and in planned tokens."""
    from mixtures.render import diff_rows, diff_table, spec_changes

    console = make_console()
    a, b = load_spec(spec_a), load_spec(spec_b)
    plans: list[Plan | None] = []
    for path in (spec_a, spec_b):
        try:
            plans.append(_compile(path, data_root)[1])
        except Nano2Error as exc:
            console.print(f"[yellow]note[/]: {path} does not compile, so only weights are compared: {exc}")
            plans.append(None)
    changes = spec_changes(a, b)
    for field, before, after in changes:
        console.print(f"{field}: {before} -> {after}")
    rows = diff_rows(a, b, plans[0], plans[1])
    if rows:
        console.print(diff_table(rows, str(spec_a), str(spec_b)))
    if not rows and not changes:
        console.print("no differences")
    elif plans[0] is not None and plans[1] is not None:
        console.print(
            f"total tokens {plans[0].total_tokens:,} -> {plans[1].total_tokens:,} "
            f"({plans[1].total_tokens - plans[0].total_tokens:+,})"
        )


@app.command("export")
def export(
    spec: Path = typer.Argument(..., help="Mixture spec (YAML)."),
    fmt: str = typer.Option("megatron", "--format", "-f", help="megatron (blend files per phase) or plan (JSON)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output directory."),
    data_root: Path = DataRoot,
    prefix_template: str = typer.Option(
        "{source}/{source}_text_document",
        "--prefix-template",
        help="Megatron prefix for sources without local .idx/.bin shards ({source}, {data_root}).",
    ),
) -> None:
    """Export a plan for a trainer: Megatron-LM `--data-path` blends per phase, or the plan JSON for train/."""
    mixture, plan = _compile(spec, data_root)
    console = make_console()
    if fmt == "megatron":
        from mixtures.export import export_megatron

        for path in export_megatron(plan, mixture, output, data_root, prefix_template):
            console.print(f"wrote {path}")
    elif fmt == "plan":
        write_plan(plan, mixture, spec, output / "plan.json", data_root)
        console.print(f"wrote {output / 'plan.json'}")
    else:
        raise Nano2Error(f"--format: expected megatron or plan, got {fmt!r}")


@app.command("plot")
def plot(
    spec: Path = typer.Argument(..., help="Mixture spec (YAML)."),
    output: Path = typer.Option(..., "--output", "-o", help="PNG file to write."),
    data_root: Path = DataRoot,
) -> None:
    """Stacked bars of each phase's mixture (the paper's Figure 3 picture) and tokens per phase."""
    from mixtures.render import plot_plan

    _, plan = _compile(spec, data_root)
    plot_plan(plan, output)
    make_console().print(f"wrote {output} ({len(plan.phases)} phases, {format_count(plan.total_tokens)} tokens)")
