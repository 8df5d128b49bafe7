"""The document contract: one Parquet schema for every curated and synthetic document folder.

Web, math, multilingual, code and synthetic (rephrased, translated, long-context) documents are all written with
`DOCUMENT_SCHEMA`, so one `polars.scan_parquet(RUN/data/**/*.parquet, hive_partitioning=True)` or one DuckDB
`read_parquet` reads every document a run kept, and nobody sniffs layouts to find a token count.

Columns: `id`, `text`, `source` (the input collection the document came from: a WARC file's name, a repository, a
synthetic task's input folder), `token_count` (tokens of `text` in the run's counting tokenizer, named by the
artifact manifest's `stats.tokenizer`), and `metadata`, a struct whose fields are fixed (`Meta` below) and null where
a producer has nothing to say. Natural language (`language`, an ISO 639 code from language ID) and programming
language (`code_language`) are distinct fields. Per-classifier quality results are a list of
{classifier, score, bucket}, so a new classifier changes values, not the schema.

Every document folder is partitioned by one hive key, `subset` (`SUBSET_KEY`): the quality level for web and math,
the natural language for multilingual text, the programming language for code, the task (or target language) for
synthetic data; the value is also in `metadata` (`level`, `language`, `code_language`, `task`), so a query never
needs the path. One key, present in every folder, is what lets a single hive-partitioned scan cover the whole run
(polars infers the partition keys from the first file and refuses a file whose path has other keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import pyarrow as pa

from nano2.errors import Nano2Error

SUBSET_KEY = "subset"
"""The one hive partition key of document folders (`<folder>/subset=<value>/<shard>.parquet`)."""


class Meta(StrEnum):
    """The keys of a document's metadata: every producer and reader uses these names, never string literals."""

    URL = "url"
    DATE = "date"
    LANGUAGE = "language"  # natural language (ISO 639), from language ID or the synthetic task's target language
    LANGUAGE_SCORE = "language_score"
    EXTRACTOR = "extractor"
    MATH = "math"  # the page holds mathematical content (routed to the math folder)
    LEVEL = "level"  # one of the five quality levels
    BUCKET = "bucket"  # the ensemble's quality bucket (0-19)
    QUALITY = "quality"  # list of {classifier, score, bucket}
    DEDUP_KEY = "dedup_key"
    CODE_LANGUAGE = "code_language"  # programming language
    REPO = "repo"
    PATH = "path"
    SIZE = "size"
    BLOB_HASH = "blob_hash"
    LICENSE_EXPRESSION = "license_expression"
    LICENSE_SPDX = "license_spdx"
    LICENSE_SOURCE = "license_source"
    LICENSE_SOURCE_PATH = "license_source_path"
    TASK = "task"  # synthetic task (diverse_qa, distill, translate, long_context_qa, ...)
    PARENT_ID = "parent_id"  # the document a synthetic one was generated from
    PROMPT_VERSION = "prompt_version"
    MODEL = "model"
    SAMPLING = "sampling"  # JSON of the sampling parameters


QUALITY_TYPE = pa.list_(pa.struct([("classifier", pa.string()), ("score", pa.float64()), ("bucket", pa.int32())]))

METADATA_TYPE = pa.struct(
    [
        (Meta.URL, pa.string()),
        (Meta.DATE, pa.string()),
        (Meta.LANGUAGE, pa.string()),
        (Meta.LANGUAGE_SCORE, pa.float64()),
        (Meta.EXTRACTOR, pa.string()),
        (Meta.MATH, pa.bool_()),
        (Meta.LEVEL, pa.string()),
        (Meta.BUCKET, pa.int32()),
        (Meta.QUALITY, QUALITY_TYPE),
        (Meta.DEDUP_KEY, pa.string()),
        (Meta.CODE_LANGUAGE, pa.string()),
        (Meta.REPO, pa.string()),
        (Meta.PATH, pa.string()),
        (Meta.SIZE, pa.int64()),
        (Meta.BLOB_HASH, pa.string()),
        (Meta.LICENSE_EXPRESSION, pa.string()),
        (Meta.LICENSE_SPDX, pa.string()),
        (Meta.LICENSE_SOURCE, pa.string()),
        (Meta.LICENSE_SOURCE_PATH, pa.string()),
        (Meta.TASK, pa.string()),
        (Meta.PARENT_ID, pa.string()),
        (Meta.PROMPT_VERSION, pa.string()),
        (Meta.MODEL, pa.string()),
        (Meta.SAMPLING, pa.string()),
    ]
)

ID, TEXT, SOURCE, TOKEN_COUNT, METADATA = "id", "text", "source", "token_count", "metadata"

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(TEXT, pa.string(), nullable=False),
        pa.field(SOURCE, pa.string()),
        pa.field(TOKEN_COUNT, pa.int64()),
        pa.field(METADATA, METADATA_TYPE),
    ]
)

META_KEYS: frozenset[str] = frozenset(m.value for m in Meta)


def quality_entries(scores: Mapping[str, float], buckets: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """The `quality` metadata value from per-classifier scores (and buckets), in classifier-name order."""
    buckets = buckets or {}
    return [
        {"classifier": name, "score": float(score), "bucket": None if buckets.get(name) is None else int(buckets[name])}
        for name, score in sorted(scores.items())
    ]


def document_metadata(values: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """The contract's metadata struct from a producer's dict: every field present (None where missing).

    `strict` refuses keys outside `Meta` (a typo or an undeclared field must not vanish silently); producers that
    carry working keys of their own between pipeline steps (datatrove's `filter_reason`, ...) pass strict=False.
    """
    if strict:
        unknown = sorted(set(values) - META_KEYS)
        if unknown:
            raise Nano2Error(
                f"document metadata has keys outside the contract: {', '.join(unknown)} "
                f"(declare them in nano2.contracts.documents.Meta)"
            )
    return {key: values.get(key) for key in METADATA_TYPE.names}


def document_record(
    *, doc_id: str, text: str, source: str | None, token_count: int | None, metadata: Mapping[str, Any]
) -> dict[str, Any]:
    """The one way to build a document row (`DOCUMENT_SCHEMA`)."""
    if not isinstance(text, str):
        raise Nano2Error(f"document {doc_id}: text must be a string, got {type(text).__name__}")
    return {
        ID: str(doc_id),
        TEXT: text,
        SOURCE: source,
        TOKEN_COUNT: None if token_count is None else int(token_count),
        METADATA: document_metadata(metadata),
    }


def check_document_schema(schema: pa.Schema, where: str) -> None:
    """Raise a clear error when a written or read file does not follow the document contract."""
    if not schema.remove_metadata().equals(DOCUMENT_SCHEMA, check_metadata=False):
        raise Nano2Error(
            f"{where}: not a document file of the contract; schema is\n{schema}\nexpected\n{DOCUMENT_SCHEMA}"
        )
