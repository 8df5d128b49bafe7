"""Exact deduplication on a normalised content hash, keyed by stable document keys.

Stage 1 (`AssignKeys` + `ExactHashSignature`, pass-through inside the extraction pipeline) writes one
`(hash, key)` line per document and task; stage 2 (`ExactFindDuplicates`, one task) keeps the smallest key of each
hash and writes the keys to remove; stage 3 (`ExactDedupFilter`) drops them. Keys (`<rank>-<position>`, kept in
the curated metadata as `dedup_key`) are assigned where documents enter the pipeline, so the filter does not depend
on how later readers shard files, and the same input always keeps the same copy. Normalisation: NFKC, lower case,
whitespace collapsed.
"""

from __future__ import annotations

import contextlib
import json
import unicodedata

from datatrove.data import DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter

from curation.decisions import mark_drop
from nano2.contracts.documents import Meta


def normalised_hash(text: str) -> str:
    """64-bit xxhash (hex) of the text after NFKC, lower-casing and whitespace collapsing."""
    import xxhash

    norm = " ".join(unicodedata.normalize("NFKC", text).lower().split())
    return xxhash.xxh64_hexdigest(norm.encode("utf-8"))


class AssignKeys(PipelineStep):
    """Give each document a run-unique, deterministic key: its task rank and position in that task's input."""

    name = "🔑 Keys"
    type = "🔢 - INDEX"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for position, doc in enumerate(data):
            doc.metadata[Meta.DEDUP_KEY] = f"{rank:05d}-{position:010d}"
            yield doc


class ExactHashSignature(PipelineStep):
    """Pass documents through while writing `hash<TAB>key` lines to `<folder>/<rank>.tsv`."""

    name = "#️⃣ Exact-dedup signature"
    type = "🫂 - DEDUP"

    def __init__(self, output_folder: DataFolderLike):
        super().__init__()
        self.output_folder = get_datafolder(output_folder)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.output_folder.open(f"{rank:05d}.tsv", "wt") as out:
            for doc in data:
                with self.track_time():
                    out.write(f"{normalised_hash(doc.text)}\t{doc.metadata[Meta.DEDUP_KEY]}\n")
                self.stat_update("signatures")
                yield doc


class ExactFindDuplicates(PipelineStep):
    """Read every task's signatures (one task) and write the keys of all but the first copy of each hash."""

    name = "#️⃣ Exact-dedup find"
    type = "🫂 - DEDUP"

    def __init__(self, signatures_folder: DataFolderLike, output_folder: DataFolderLike):
        super().__init__()
        self.signatures = get_datafolder(signatures_folder)
        self.output_folder = get_datafolder(output_folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        keeper: dict[str, str] = {}
        duplicates: list[tuple[str, str]] = []
        for path in sorted(self.signatures.list_files(glob_pattern="*.tsv")):
            with self.signatures.open(path, "rt") as f:
                for line in f:
                    digest, key = line.rstrip("\n").split("\t")
                    self.stat_update("signatures")
                    first = keeper.get(digest)
                    if first is None:
                        keeper[digest] = key
                    elif key < first:
                        duplicates.append((first, key))
                        keeper[digest] = key
                    else:
                        duplicates.append((key, first))
        with self.output_folder.open("remove.jsonl", "wt") as out:
            for removed, kept in sorted(duplicates):
                out.write(json.dumps({"remove": removed, "kept": kept}) + "\n")
        self.stat_update("duplicates", value=len(duplicates))
        self.stat_update("unique", value=len(keeper))
        if data:
            yield from data


class ExactDedupFilter(PipelineStep):
    """Drop documents whose key is in the remove list; the decision names the copy that was kept."""

    name = "#️⃣ Exact-dedup filter"
    type = "🫂 - DEDUP"

    def __init__(self, duplicates_folder: DataFolderLike, decisions: DiskWriter | None = None):
        super().__init__()
        self.duplicates = get_datafolder(duplicates_folder)
        self.decisions = decisions

    def _load(self) -> dict[str, str]:
        if not self.duplicates.exists("remove.jsonl"):
            return {}
        with self.duplicates.open("remove.jsonl", "rt") as f:
            return {row["remove"]: row["kept"] for row in map(json.loads, f)}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        remove = self._load()
        writer_ctx = self.decisions if self.decisions is not None else contextlib.nullcontext()
        with writer_ctx as writer:
            for doc in data:
                self.stat_update("total")
                kept_copy = remove.get(doc.metadata.get(Meta.DEDUP_KEY, ""))
                if kept_copy is None:
                    self.stat_update("forwarded")
                    yield doc
                    continue
                self.stat_update("dropped", "dropped_exact_duplicate")
                if writer is not None:
                    writer.write(mark_drop(doc, "exact_duplicate", {"kept_copy": kept_copy}), rank)
