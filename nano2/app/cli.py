"""The `nano2` command: one sub-app per package, errors as one line with exit code 2 (tracebacks with --debug)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import click
import typer

from nano2.code_record import start_recording
from nano2.errors import Nano2Error

app = typer.Typer(
    name="nano2",
    help="Nemotron Nano 2 recipe: curate, synthesise, mix, train, compress and evaluate; audit everything.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (command, module with a typer `app`): packages mount themselves once their CLI module exists.
SUB_APPS = [
    ("mix", "mixtures.cli"),
    ("curate", "curation.cli"),
    ("synth", "synthetic.cli"),
    ("model", "model.cli"),
    ("train", "train.cli"),
    ("compress", "compress.cli"),
    ("eval", "evals.cli"),
    ("run", "nano2.app.recipe"),
    ("report", "nano2.app.report"),
]


def package_version() -> str:
    """The installed distribution's version (pyproject.toml)."""
    from importlib import metadata

    try:
        return metadata.version("nano2-recipe")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        print(f"nano2 {package_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks instead of one-line errors (anywhere on the command line)."
    ),
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
):
    """Nemotron Nano 2 recipe."""


def _mount_sub_apps(args: list[str] | None = None) -> None:
    """Mount the sub-app the command line names (only its code is imported, so only its code is recorded as what
    the command ran), or every sub-app when none is named (`nano2 --help`)."""
    named = next((a for a in args or [] if not a.startswith("-")), None)
    wanted = [(n, m) for n, m in SUB_APPS if n == named] or SUB_APPS
    for name, module in wanted:
        if importlib.util.find_spec(module) is not None:
            loaded = importlib.import_module(module)
            sub = getattr(loaded, "app", None)
            if isinstance(sub, typer.Typer):
                app.add_typer(sub, name=name)
            elif callable(getattr(loaded, "COMMAND", None)):  # a single command, e.g. `nano2 run RECIPE`
                app.command(name)(loaded.COMMAND)


@app.command("audit")
def audit(
    root: Path = typer.Argument(..., help="Data root to audit (every manifest.json below it is an artifact)."),
    sql: str | None = typer.Option(None, "--sql", help="SQL to run over the views (see --list-views)."),
    query: str | None = typer.Option(None, "--query", "-q", help="Name of a saved query (see --list-queries)."),
    queries_dir: list[Path] = typer.Option([], "--queries-dir", help="More directories of saved .sql queries."),
    list_queries: bool = typer.Option(False, "--list-queries", help="List saved queries and exit."),
    list_views: bool = typer.Option(False, "--list-views", help="List tables/views and their columns and exit."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or parquet."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the result to this file."),
    limit: int = typer.Option(200, "--limit", help="Rows shown in table format (files get every row)."),
    save: Path | None = typer.Option(
        None, "--save", help="Persist the tables, views and saved queries (as q_<name> views) in a .duckdb file."
    ),
) -> None:
    """Audit a data root with DuckDB: a summary, a saved query, or your own SQL."""
    from nano2.app.audit import Audit, query_title
    from nano2.console import make_console

    if fmt not in ("table", "csv", "json", "parquet"):
        raise Nano2Error(f"--format: expected table, csv, json or parquet, got {fmt!r}")
    if fmt == "parquet" and output is None:
        raise Nano2Error("--format parquet needs --output FILE")
    console = make_console()
    db = Audit(root)
    saved = db.saved_queries(queries_dir)
    if list_queries:
        for name, path in saved.items():
            console.print(f"[bold]{name}[/]  {query_title(path)}  [dim]{path}[/]")
        return
    if list_views:
        for (table,) in db.con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall():
            cols = db.con.execute(f"DESCRIBE {table}").fetchall()
            console.print(f"[bold]{table}[/]: " + ", ".join(f"{c[0]} {c[1]}" for c in cols))
        return
    if save is not None:
        written = db.save(save, saved)
        console.print(f"wrote {save}: {len(written)} tables and views (duckdb {save} or polars via duckdb)")
        if sql is None and query is None:
            return
    if sql is not None and query is not None:
        raise Nano2Error("give --sql or --query, not both")
    if query is not None:
        if query not in saved:
            raise Nano2Error(f"--query: no saved query {query!r}; saved: {', '.join(saved) or 'none'}")
        sql = saved[query].read_text(encoding="utf-8")
    if sql is None:
        _print_summary(db, saved, console, limit)
        return
    _emit(db, sql, fmt, output, console, limit, title=None)


def _print_summary(db, saved, console, limit: int) -> None:
    from nano2.app.audit import query_title

    console.print(
        f"[bold]audit of {db.root}[/]: {len(db.artifacts)} artifacts, {len(db.orphans)} files without a manifest"
    )
    for path in saved.values():
        _emit(db, path.read_text(encoding="utf-8"), "table", None, console, limit, title=query_title(path))


def _emit(db, sql: str, fmt: str, output: Path | None, console, limit: int, title: str | None) -> None:
    from rich.table import Table

    rel = db.query(sql)
    if rel is None:  # a statement without a result (e.g. CREATE VIEW)
        return
    columns = rel.columns
    if fmt == "table" and output is None:
        rows = rel.limit(limit + 1).fetchall()
        table = Table(title=title, title_justify="left")
        for i, col in enumerate(columns):
            numeric = any(isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in rows)
            table.add_column(col, justify="right" if numeric else "left", overflow="fold")
        for row in rows[:limit]:
            table.add_row(
                *(
                    "" if v is None else (f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
                    for v in row
                )
            )
        if not rows:
            table.caption = "(no rows)"
        elif len(rows) > limit:
            table.caption = f"(first {limit} rows; use --limit or --output for all)"
        console.print(table)
        return
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        if fmt in ("csv", "table"):
            rel.write_csv(str(output))
        elif fmt == "parquet":
            rel.write_parquet(str(output))
        else:
            output.write_text(_to_json(rel), encoding="utf-8")
        console.print(f"wrote {output}")
        return
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rel.fetchall())
    else:
        sys.stdout.write(_to_json(rel))


def _to_json(rel) -> str:
    rows = [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]
    return json.dumps(rows, indent=2, default=str) + "\n"


def _one_line(exc: BaseException | str) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _exception_classes(name: str) -> tuple[type[BaseException], ...]:
    """click's exception class `name` and typer's vendored copy of it (typer >= 0.16 ships its own click): an
    error raised by either must be caught."""
    import typer.exceptions

    found = [getattr(click.exceptions, name, None), getattr(typer.exceptions, name, None)]
    try:
        from typer._click import exceptions as vendored

        found.append(getattr(vendored, name, None))
    except ImportError:
        pass
    return tuple({c for c in found if isinstance(c, type)})


_EXIT, _ABORT = _exception_classes("Exit"), _exception_classes("Abort")
_USAGE, _NO_ARGS_HELP = _exception_classes("UsageError"), _exception_classes("NoArgsIsHelpError")
_CLICK = _exception_classes("ClickException")


def split_debug(args: list[str]) -> tuple[list[str], bool]:
    """Remove `--debug` wherever it stands before a `--` (it is global: `nano2 mix validate X --debug` too)."""
    end = args.index("--") if "--" in args else len(args)
    kept = [a for a in args[:end] if a != "--debug"] + args[end:]
    return kept, len(kept) != len(args)


def _usage_line(exc: BaseException) -> str | None:
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return None
    return " ".join(ctx.get_usage().split()).replace("Usage: ", "usage: ", 1)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every failure into `error: ...` and exit code 2 (unless --debug); a usage
    error also prints the usage line of the command it concerns."""
    args, debug = split_debug(list(sys.argv[1:] if argv is None else argv))
    start_recording()  # the recipe runner's fingerprints hash the code this process really runs
    _mount_sub_apps(args)
    try:
        app(args=args, prog_name="nano2", standalone_mode=False)
    except _EXIT as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except _ABORT:
        print("error: aborted", file=sys.stderr)
        sys.exit(2)
    except _NO_ARGS_HELP as exc:  # `nano2 mix`: the group's help
        exc.show()
        sys.exit(2)
    except _USAGE as exc:
        if debug:
            raise
        usage = _usage_line(exc)
        if usage:
            print(usage, file=sys.stderr)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        print(f"error: {_one_line(exc.format_message() if hasattr(exc, 'format_message') else exc)}{hint}",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    except _CLICK as exc:
        if debug:
            raise
        print(f"error: {_one_line(exc.format_message())}", file=sys.stderr)
        sys.exit(2)
    except Nano2Error as exc:
        if debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, OSError) and exc.filename is not None:  # a path that is missing, a file, a folder
            print(f"error: {exc.filename}: {_one_line(exc.strerror or exc)}", file=sys.stderr)
            sys.exit(2)
        print(f"error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the traceback)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
