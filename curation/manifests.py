"""Run manifests for curation outputs: datatrove's per-step counters plus document/token counts by any grouping.

Counts are read back from the written Parquet documents with DuckDB (not from what the steps believed they
wrote), grouped by hive partitions (`level=high/...`) or by metadata fields (`language`, `license_spdx`, ...), so
the manifest's `stats.by.<grouping>.<value>` is what `mixtures` reads for a `path: .../level=high` source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from curation.executors import read_step_stats
from nano2.manifest import InputRef, Manifest, OutputStats, Stats, current_command, write_manifest


def _document_files(output_dir: Path) -> list[str]:
    return sorted(
        str(p) for p in output_dir.rglob("*.parquet") if "decisions" not in p.relative_to(output_dir).parts[:-1]
    )


def summarize_documents(output_dir: str | Path, group_by: list[str] | None = None) -> OutputStats:
    """Documents, tokens (metadata.token_count) and text bytes overall and per grouping.

    A grouping is a hive partition key present in the paths (e.g. `level`) or a metadata field (e.g. `language`).
    """
    output_dir = Path(output_dir)
    files = _document_files(output_dir)
    if not files:
        return OutputStats(documents=0, tokens=0, bytes=0)
    con = duckdb.connect(":memory:")
    file_list = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    con.execute(
        f"CREATE VIEW docs AS SELECT * FROM read_parquet({file_list}, union_by_name=true, hive_partitioning=true)"
    )
    cols = {r[0]: r[1] for r in con.execute("DESCRIBE docs").fetchall()}
    meta = cols.get("metadata", "")
    tokens = "TRY_CAST(metadata.token_count AS BIGINT)" if "token_count" in meta else "NULL::BIGINT"
    base = f"count(*), sum({tokens}), sum(strlen(text))"
    total = con.execute(f"SELECT {base} FROM docs").fetchall()[0]
    by: dict[str, dict[str, Stats]] = {}
    for key in group_by or []:
        if key in cols:
            expr = f'CAST("{key}" AS VARCHAR)'
        elif meta.startswith("STRUCT") and f"{key} " in meta:
            expr = f'CAST(metadata."{key}" AS VARCHAR)'
        else:
            continue
        rows = con.execute(f"SELECT coalesce({expr}, 'unknown'), {base} FROM docs GROUP BY 1 ORDER BY 1").fetchall()
        by[key] = {str(v): Stats(documents=d, tokens=t, bytes=b) for v, d, t, b in rows}
    return OutputStats(documents=total[0], tokens=total[1], bytes=total[2], by=by)


def write_run_manifest(
    output_dir: str | Path,
    *,
    kind: str,
    name: str,
    config: Any,
    config_path: str | Path | None,
    inputs: list[InputRef],
    logging_dirs: list[str | Path],
    group_by: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """The manifest of a curation run: what it read, what each step did, and what was written."""
    steps: list[dict[str, Any]] = []
    for logging_dir in logging_dirs:
        steps.extend(read_step_stats(logging_dir))
    return write_manifest(
        output_dir,
        kind=kind,
        name=name,
        command=current_command(),
        config=config,
        config_path=config_path,
        inputs=inputs,
        stats=summarize_documents(output_dir, group_by),
        extra={"steps": steps, **(extra or {})},
        hash_files=True,
    )
