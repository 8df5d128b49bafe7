"""The decisions table: one Parquet row for every document a step drops, so `nano2 audit` can answer why.

Rows are `(doc_id, url, step, kept, reason, scores)`, `scores` a JSON object of whatever the step measured. Files go
to `<output>/decisions/<step>/<rank>.parquet`, inside the run's artifact directory, where the audit finds them.
Two ways in: pass `decisions_writer(out, step)` as a datatrove filter's `exclusion_writer` (datatrove sets
`metadata["filter_reason"]`), or call `drop(...)` from our own steps.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.writers import ParquetWriter

DECISIONS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("url", pa.string()),
        ("step", pa.string()),
        ("kept", pa.bool_()),
        ("reason", pa.string()),
        ("scores", pa.string()),
    ]
)
SCORE_KEY = "decision_scores"

DECISIONS_DIR = "decisions"  # below an artifact: drop records, never documents (readers of documents skip it)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


class DecisionsWriter(ParquetWriter):
    """A ParquetWriter whose rows are decisions, not documents."""

    name = "🧾 Decisions"

    def __init__(self, output_folder: str, step: str, batch_size: int = 1000, default_reason: str | None = None):
        self.step = step
        self.default_reason = default_reason  # for writers handed documents without a filter_reason
        super().__init__(
            f"{str(output_folder).rstrip('/')}/{DECISIONS_DIR}",
            output_filename=f"{step}/${{rank}}.parquet",
            adapter=_decision_row,
            schema=DECISIONS_SCHEMA,
            batch_size=batch_size,
            use_content_defined_chunking=False,
        )


def _decision_row(writer: DecisionsWriter, document: Document) -> dict[str, Any]:
    meta = document.metadata
    return {
        "doc_id": str(document.id),
        "url": meta.get("url"),
        "step": writer.step,
        "kept": False,
        "reason": meta.get("filter_reason") or writer.default_reason,
        "scores": json.dumps(_json_safe(meta.get(SCORE_KEY, {})), sort_keys=True),
    }


def decisions_writer(output_folder: str, step: str) -> DecisionsWriter:
    return DecisionsWriter(output_folder, step)


def mark_drop(document: Document, reason: str, scores: dict[str, Any] | None = None) -> Document:
    """Annotate a document with why it is dropped (before handing it to a DecisionsWriter)."""
    document.metadata["filter_reason"] = reason
    if scores:
        document.metadata[SCORE_KEY] = scores
    return document
