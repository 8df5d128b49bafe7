"""The writer every curation pipeline ends with: datatrove Documents in, the document contract out.

Inside a pipeline a document's metadata is a working dict: the contract's fields under their `Meta` keys, the
values of the `source` and `token_count` columns under the column names (datatrove's TokensCounter writes
`metadata["token_count"]`), and keys the steps use among themselves (`filter_reason`, `is_html`, the `subset`
partition value, ...). `DocumentWriter` turns that into one `DOCUMENT_SCHEMA` row: the two columns lifted out, the
contract's metadata fields kept, working keys left behind. Every curated folder is written by it, so web, math,
multilingual and code documents share one schema and one shard naming.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datatrove.data import Document
from datatrove.pipeline.writers import JsonlWriter, ParquetWriter

from nano2.contracts.documents import (
    DOCUMENT_SCHEMA,
    SOURCE,
    SUBSET_KEY,
    TOKEN_COUNT,
    Meta,
    document_metadata,
    document_record,
)
from nano2.contracts.shards import SUBSET_SHARD_TEMPLATE
from nano2.errors import Nano2Error


def contract_row(writer: Any, doc: Document) -> dict[str, Any]:
    """A document row of the contract from a datatrove Document (its working metadata keys are left out)."""
    meta = doc.metadata
    date = meta.get(Meta.DATE)
    return document_record(
        doc_id=str(doc.id),
        text=doc.text,
        source=meta.get(SOURCE),
        token_count=meta.get(TOKEN_COUNT),
        metadata=document_metadata({**meta, Meta.DATE: None if date is None else str(date)}, strict=False),
    )


class DocumentWriter(ParquetWriter):
    """Parquet documents of the contract at `<folder>/subset=<value>/<rank>.parquet`.

    Every document folder is partitioned by the one key `subset` (so one hive-partitioned scan reads every folder
    of a run): the value is `metadata["subset"]` when the step that routes documents set it, else the metadata field
    `subset_from` names (e.g. `code_language` for code)."""

    name = "📄 Documents"

    def __init__(self, output_folder: str | Path, subset_from: str | None = None, batch_size: int = 1000):
        super().__init__(
            str(output_folder),
            output_filename=SUBSET_SHARD_TEMPLATE,
            adapter=contract_row,
            schema=DOCUMENT_SCHEMA,
            batch_size=batch_size,
            max_file_size=-1,  # one shard per rank and partition: `00000.parquet`, never `000_00000.parquet`
        )
        self.subset_from = subset_from

    def write(self, document: Document, rank: int = 0, **kwargs) -> None:
        if not document.metadata.get(SUBSET_KEY) and self.subset_from is not None:
            document.metadata[SUBSET_KEY] = document.metadata.get(self.subset_from) or "unknown"
        if not document.metadata.get(SUBSET_KEY):
            raise Nano2Error(f"document {document.id}: no metadata[{SUBSET_KEY!r}] to name its partition by")
        super().write(document, rank, **kwargs)


def _working_row(writer: JsonlWriter, doc: Document) -> dict[str, Any]:
    return {"text": doc.text, "id": doc.id, "metadata": {str(key): value for key, value in doc.metadata.items()}}


class WorkingDocumentsWriter(JsonlWriter):
    """JSONL documents between the stages of a pipeline: schema-free, the whole working metadata (read back by
    datatrove's JsonlReader). orjson, datatrove's JSON encoder, refuses `Meta` (StrEnum) keys, so every key is
    written as a plain string."""

    name = "🗂 Working documents"

    def __init__(self, output_folder: str | Path):
        super().__init__(str(output_folder), output_filename="${rank}.jsonl.gz", adapter=_working_row)
