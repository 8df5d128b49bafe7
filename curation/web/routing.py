"""Write each document to the artifact its metadata selects: English by quality level, math pages, and the 15
languages of the multilingual crawl, each partitioned for the mixtures (`web/level=high`, `math/level=high`,
`multilingual/language=fr`). The Parquet files share one explicit schema, so documents from different sources
(WARC records, JSONL rows) and any batch size write without schema clashes."""

from __future__ import annotations

import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers import ParquetWriter

WEB, MATH, MULTILINGUAL = "web", "math", "multilingual"
_STRING_FIELDS = ("url", "date", "source", "language", "extractor", "level", "nano2_key")


def destination(doc: Document) -> str:
    if doc.metadata.get("language", "en") != "en":
        return MULTILINGUAL
    return MATH if doc.metadata.get("math") else WEB


def document_schema(classifiers: list[str]) -> pa.Schema:
    """text, id and a metadata struct with every field the web artifacts carry (nullable)."""
    fields = [pa.field(name, pa.string()) for name in _STRING_FIELDS]
    fields += [
        pa.field("language_score", pa.float64()),
        pa.field("token_count", pa.int64()),
        pa.field("math", pa.bool_()),
        pa.field("bucket", pa.int64()),
    ]
    if classifiers:
        fields += [
            pa.field("quality_scores", pa.struct([pa.field(c, pa.float64()) for c in classifiers])),
            pa.field("quality_buckets", pa.struct([pa.field(c, pa.int64()) for c in classifiers])),
        ]
    return pa.schema(
        [pa.field("text", pa.string()), pa.field("id", pa.string()), pa.field("metadata", pa.struct(fields))]
    )


def _record(writer: ParquetWriter, doc: Document) -> dict:
    meta = doc.metadata
    metadata = {name: meta.get(name) for name in writer.schema.field("metadata").type.names}
    if "date" in metadata and metadata["date"] is not None:
        metadata["date"] = str(metadata["date"])
    return {"text": doc.text, "id": str(doc.id), "metadata": metadata}


class RouteWriter(PipelineStep):
    """Parquet writers for web/, math/ and multilingual/ under one output folder; documents pass through."""

    name = "🧭 Route + write"
    type = "💽 - WRITER"

    def __init__(self, output_folder: str, classifiers: list[str]):
        super().__init__()
        root = output_folder.rstrip("/")
        schema = document_schema(classifiers)

        def writer(artifact: str, partition: str) -> ParquetWriter:
            return ParquetWriter(
                f"{root}/{artifact}", output_filename=f"{partition}/${{rank}}.parquet", adapter=_record, schema=schema
            )

        self.writers = {
            WEB: writer(WEB, "level=${level}"),
            MATH: writer(MATH, "level=${level}"),
            MULTILINGUAL: writer(MULTILINGUAL, "language=${language}"),
        }

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.writers[WEB] as web, self.writers[MATH] as math, self.writers[MULTILINGUAL] as multi:
            open_writers = {WEB: web, MATH: math, MULTILINGUAL: multi}
            for doc in data:
                where = destination(doc)
                if where != MULTILINGUAL:
                    doc.metadata.setdefault("level", "unscored")
                open_writers[where].write(doc, rank)
                self.stat_update(f"written_{where}")
                yield doc
