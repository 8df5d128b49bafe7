"""Write each document to the artifact its metadata selects: English by quality level, math pages, and the 15
languages of the multilingual crawl, each partitioned for the mixtures (`web/subset=high`, `math/subset=high`,
`multilingual/subset=fr`). All three are document folders of the contract (`curation.documents.DocumentWriter`),
so documents from different sources (WARC records, JSONL rows) and any batch size write one schema."""

from __future__ import annotations

from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.documents import DocumentWriter
from curation.quality.levels import UNSCORED
from nano2.contracts.documents import SUBSET_KEY, Meta

WEB, MATH, MULTILINGUAL = "web", "math", "multilingual"
ARTIFACTS = (WEB, MATH, MULTILINGUAL)


def destination(doc: Document) -> str:
    if doc.metadata.get(Meta.LANGUAGE, "en") != "en":
        return MULTILINGUAL
    return MATH if doc.metadata.get(Meta.MATH) else WEB


def subset_of(doc: Document, where: str) -> str:
    """The partition of a document: its language in multilingual/, its quality level elsewhere."""
    if where == MULTILINGUAL:
        return doc.metadata[Meta.LANGUAGE]
    return doc.metadata.setdefault(Meta.LEVEL, UNSCORED)


class RouteWriter(PipelineStep):
    """Document writers for web/, math/ and multilingual/ under one output folder; documents pass through."""

    name = "🧭 Route + write"
    type = "💽 - WRITER"

    def __init__(self, output_folder: str | Path):
        super().__init__()
        root = Path(output_folder)
        self.writers = {artifact: DocumentWriter(root / artifact) for artifact in ARTIFACTS}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.writers[WEB] as web, self.writers[MATH] as math, self.writers[MULTILINGUAL] as multi:
            open_writers = {WEB: web, MATH: math, MULTILINGUAL: multi}
            for doc in data:
                where = destination(doc)
                doc.metadata[SUBSET_KEY] = subset_of(doc, where)
                open_writers[where].write(doc, rank)
                self.stat_update(f"written_{where}")
                yield doc
