"""Run manifests for curation outputs: datatrove's per-step counters plus document/token counts by any grouping.

Counts are read back from the written documents (the document contract) with DuckDB, not from what the steps
believed they wrote: overall and grouped by the `subset` partition (`stats.by.subset.high`, what `mixtures` reads
for a `path: .../subset=high` source) or by a metadata field (`stats.by.language.fr`, `stats.by.license_spdx.MIT`).
Every `tokens` count is in the run's counting tokenizer, named in `stats.tokenizer`. The decisions beside an
artifact get a manifest of their own (kind `decisions`), with drops by step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from curation.executors import read_step_stats
from nano2.contracts.documents import META_KEYS, METADATA, SUBSET_KEY, TEXT, TOKEN_COUNT, check_document_schema
from nano2.contracts.shards import SHARD_SUFFIX, decisions_dir
from nano2.errors import Nano2Error
from nano2.manifest import (
    ArtifactKind,
    InputRef,
    Manifest,
    OutputStats,
    Stats,
    current_command,
    write_manifest,
)


def _shards(directory: Path) -> list[str]:
    return sorted(str(p) for p in directory.rglob(f"*{SHARD_SUFFIX}"))


def _file_list(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def summarize_documents(artifact_dir: str | Path, group_by: list[str] | None = None) -> OutputStats:
    """Documents, tokens and text bytes of a document folder, overall and per grouping.

    A grouping is `subset` (the partition, when the folder has one) or a `Meta` key (read from `metadata`).
    Every shard must follow the document contract: a file that does not is an error, never guessed around.
    """
    files = _shards(Path(artifact_dir))
    if not files:
        return OutputStats(documents=0, tokens=0, bytes=0)
    for f in files:
        check_document_schema(pq.read_schema(f), f)
    con = duckdb.connect(":memory:")
    con.execute(
        f"CREATE VIEW docs AS SELECT * FROM read_parquet({_file_list(files)}, hive_partitioning=true, "
        "hive_types_autocast=false)"
    )
    partitioned = SUBSET_KEY in {row[0] for row in con.execute("DESCRIBE docs").fetchall()}
    base = f"count(*), sum({TOKEN_COUNT}), sum(strlen({TEXT}))"
    total = con.execute(f"SELECT {base} FROM docs").fetchall()[0]
    by: dict[str, dict[str, Stats]] = {}
    for key in group_by or []:
        if key == SUBSET_KEY:
            if not partitioned:
                continue
            expr = SUBSET_KEY
        elif key in META_KEYS:
            expr = f'{METADATA}."{key}"'
        else:
            raise Nano2Error(f"cannot group documents by {key!r}: neither {SUBSET_KEY!r} nor a metadata field")
        rows = con.execute(
            f"SELECT coalesce(CAST({expr} AS VARCHAR), 'unknown'), {base} FROM docs GROUP BY 1 ORDER BY 1"
        ).fetchall()
        by[key] = {str(v): Stats(documents=d, tokens=t, bytes=b) for v, d, t, b in rows}
    return OutputStats(documents=total[0], tokens=total[1], bytes=total[2], by=by)


def write_run_manifest(
    output_dir: str | Path,
    *,
    name: str,
    config: Any,
    config_path: str | Path | None,
    inputs: list[InputRef],
    logging_dirs: list[str | Path],
    tokenizer: str,
    group_by: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """The manifest of a curated document folder: what it read, what each step did, and what was written
    (`tokenizer`: `tokenizer_id` of the counting tokenizer, see curation.tokens)."""
    steps: list[dict[str, Any]] = []
    for logging_dir in logging_dirs:
        steps.extend(read_step_stats(logging_dir))
    stats = summarize_documents(output_dir, group_by).model_copy(update={"tokenizer": tokenizer})
    return write_manifest(
        output_dir,
        kind=ArtifactKind.DOCUMENTS,
        name=name,
        command=current_command(),
        config=config,
        config_path=config_path,
        inputs=inputs,
        stats=stats,
        extra={"steps": steps, **(extra or {})},
        hash_files=True,
    )


def summarize_decisions(directory: str | Path) -> OutputStats:
    """Dropped documents in a decisions folder, overall and by step."""
    files = _shards(Path(directory))
    if not files:
        return OutputStats(documents=0)
    rows = duckdb.sql(f"SELECT step, count(*) FROM read_parquet({_file_list(files)}) GROUP BY 1 ORDER BY 1").fetchall()
    return OutputStats(
        documents=sum(n for _, n in rows), by={"step": {str(step): Stats(documents=n) for step, n in rows}}
    )


def write_decisions_manifest(
    artifact_dir: str | Path,
    *,
    name: str,
    config: Any,
    config_path: str | Path | None,
    inputs: list[InputRef],
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """The manifest of the decisions beside `artifact_dir` (`decisions_dir`), written even when nothing was dropped,
    so an empty result still says that the steps ran (`extra`: e.g. why the run has nothing left)."""
    directory = decisions_dir(artifact_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return write_manifest(
        directory,
        kind=ArtifactKind.DECISIONS,
        name=name,
        command=current_command(),
        config=config,
        config_path=config_path,
        inputs=inputs,
        stats=summarize_decisions(directory),
        extra=extra or {},
        hash_files=True,
    )
