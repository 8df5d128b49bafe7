"""Write each document to the artifact its metadata selects: English by quality level, math pages, and the 15
languages of the multilingual crawl, each partitioned for the mixtures (`web/level=high`, `math/level=high`,
`multilingual/language=fr`)."""

from __future__ import annotations

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers import ParquetWriter

WEB, MATH, MULTILINGUAL = "web", "math", "multilingual"


def destination(doc: Document) -> str:
    if doc.metadata.get("language", "en") != "en":
        return MULTILINGUAL
    return MATH if doc.metadata.get("math") else WEB


class RouteWriter(PipelineStep):
    """Parquet writers for web/, math/ and multilingual/ under one output folder; documents pass through."""

    name = "🧭 Route + write"
    type = "💽 - WRITER"

    def __init__(self, output_folder: str):
        super().__init__()
        root = output_folder.rstrip("/")
        self.writers = {
            WEB: ParquetWriter(f"{root}/{WEB}", output_filename="level=${level}/${rank}.parquet"),
            MATH: ParquetWriter(f"{root}/{MATH}", output_filename="level=${level}/${rank}.parquet"),
            MULTILINGUAL: ParquetWriter(
                f"{root}/{MULTILINGUAL}", output_filename="language=${language}/${rank}.parquet"
            ),
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
