"""The decisions table: one Parquet row for every document a step drops, so `nano2 audit` can answer why.

Rows follow `nano2.contracts.shards.DECISIONS_SCHEMA`: `(doc_id, url, step, kept, reason, scores)`, `scores` a JSON
object of whatever the step measured. A writer is named by the artifact the pipeline writes and the step; its
files go beside that artifact, never inside it (`decisions_dir`), so a glob over documents never meets them.
Two ways in: pass a `DecisionsWriter` as a datatrove filter's `exclusion_writer` (datatrove sets
`metadata["filter_reason"]`), or call `mark_drop(...)` from our own steps before writing the document to one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datatrove.data import Document
from datatrove.pipeline.writers import ParquetWriter

from nano2.contracts.documents import Meta
from nano2.contracts.shards import DECISIONS_SCHEMA, SHARD_TEMPLATE, step_decisions_dir

SCORE_KEY = "decision_scores"  # working metadata key: what a step measured on a document it drops
REASON_KEY = "filter_reason"  # datatrove's key for why a filter dropped a document


def _json_safe(value: Any) -> Any:
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


class DecisionsWriter(ParquetWriter):
    """A ParquetWriter whose rows are decisions, not documents: `<decisions of artifact_dir>/<step>/<rank>.parquet`.

    `default_reason` is the reason of documents that arrive without one (datatrove's dedup filters drop without
    saying why). Several steps of one pipeline may share a writer (the readers of a stage, each with its own
    `with writer:`); it closes its files when the outermost `with` ends, so no step truncates another's file.
    """

    name = "🧾 Decisions"

    def __init__(self, artifact_dir: str | Path, step: str, batch_size: int = 1000, default_reason: str | None = None):
        self.step = step
        self.default_reason = default_reason
        super().__init__(
            str(step_decisions_dir(artifact_dir, step)),
            output_filename=SHARD_TEMPLATE,
            adapter=_decision_row,
            schema=DECISIONS_SCHEMA,
            batch_size=batch_size,
            max_file_size=-1,  # one file per rank, named like every other shard
            use_content_defined_chunking=False,
        )
        self._open_contexts = 0

    def __enter__(self) -> DecisionsWriter:
        self._open_contexts += 1
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        self._open_contexts -= 1
        if self._open_contexts == 0:
            self.close()


def _decision_row(writer: DecisionsWriter, document: Document) -> dict[str, Any]:
    meta = document.metadata
    return {
        "doc_id": str(document.id),
        "url": meta.get(Meta.URL),
        "step": writer.step,
        "kept": False,
        "reason": meta.get(REASON_KEY) or writer.default_reason,
        "scores": json.dumps(_json_safe(meta.get(SCORE_KEY, {})), sort_keys=True),
    }


def mark_drop(document: Document, reason: str, scores: dict[str, Any] | None = None) -> Document:
    """Annotate a document with why it is dropped (before handing it to a DecisionsWriter)."""
    document.metadata[REASON_KEY] = reason
    if scores:
        document.metadata[SCORE_KEY] = scores
    return document


def nothing_left_reason(decisions: Path, after: str, items: str = "document") -> str:
    """`nothing left after <stage>: every <item> was dropped (<n>: <step>/<reason>: n, ...)` from the decision
    shards under `decisions`, or `... the inputs held no <item>` when there are none: the `empty_reason` of an
    empty artifact's manifest."""
    import duckdb

    files = sorted(str(p) for p in Path(decisions).rglob("*.parquet"))
    drops: list[tuple[str, str, int]] = []
    if files:
        listing = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
        drops = duckdb.sql(
            f"SELECT step, reason, count(*) FROM read_parquet({listing}) GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
        ).fetchall()
    if not drops:
        return f"nothing left after {after}: the inputs held no {items}"
    total = sum(n for _, _, n in drops)
    detail = ", ".join(f"{step}/{reason}: {n}" for step, reason, n in drops[:10])
    more = f", and {len(drops) - 10} more reasons" if len(drops) > 10 else ""
    return f"nothing left after {after}: every {items} was dropped ({total}: {detail}{more})"
