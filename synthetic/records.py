"""What synthetic/ writes: documents and chat rows of the contracts, drop decisions beside them, one manifest each.

- Documents (rephrase, translate, long_context) are `nano2.contracts.documents` rows: the text a pretraining mixture
  reads, `token_count` in the counting tokenizer, provenance in the typed metadata (`Meta.TASK`, `PARENT_ID`, ...).
- Chat and preference rows (reasoning, truncate, preference, teacher demonstrations) are built by the chat
  contract's one writer (`chat_record`, `preference_record`) and checked by its one validator before they are
  written, so a row synthesis writes is a row the trainer keeps (one that breaks the contract is a counted drop).
  A row's `text` is its training text (`model.tokenizer.chat_training_text`), `metadata.token_count` its length.

Files: `<stage dir>/subset=<value>/00000.parquet` (`nano2.contracts.shards`; the subset is the task, or the language
of a translation) and `manifest.json` (kind documents, chat or preference; stats by subset and task, chat rows also
by reasoning mode; `stats.tokenizer` names the counting tokenizer; `extra.synthetic_stage` marks it as ours). Drops
go to the contract's decisions folder beside the stage dir (`decisions_dir`: `RUN/decisions/...` for a stage in a
run's `data` folder, `<stage dir>.decisions` elsewhere), `<step>/00000.parquet` with a manifest of kind decisions,
so `nano2 audit` counts them and no reader of the stage dir ever meets them.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from nano2.contracts.chat import (
    CHAT_SCHEMA,
    PREFERENCE_SCHEMA,
    chat_record,
    decode_metadata,
    encode_metadata,
    validate_chat_record,
    validate_preference_record,
)
from nano2.contracts.documents import (
    DOCUMENT_SCHEMA,
    SUBSET_KEY,
    TOKEN_COUNT,
    Meta,
    check_document_schema,
    document_record,
)
from nano2.contracts.shards import DECISIONS_SCHEMA, decisions_dir, shard_name, step_decisions_dir, subset_dir
from nano2.errors import Nano2Error
from nano2.manifest import (
    MANIFEST_NAME,
    ArtifactKind,
    InputRef,
    Manifest,
    OutputStats,
    Stats,
    current_command,
    read_manifest,
    write_manifest,
)
from synthetic.tokens import TokenCounter

SYNTHETIC_STAGE = "synthetic_stage"
"""The `manifest.extra` key naming the synthesis stage that wrote an artifact: what marks a folder as ours."""


def training_text(messages: Sequence[Mapping[str, str]]) -> str:
    """The contract's training text of a chat row (`model.tokenizer.chat_training_text`, prompt + target)."""
    from model.tokenizer import chat_training_text

    return "".join(chat_training_text(messages))


def chat_row(
    *,
    row_id: str,
    messages: Sequence[Mapping[str, str]],
    reasoning: bool,
    task: str,
    source_id: str,
    prompt_version: str,
    model: str,
    sampling: Mapping[str, Any] | None,
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """A chat row of the contract whose `text` is the conversation's training text."""
    return chat_record(
        row_id=row_id,
        messages=messages,
        reasoning=reasoning,
        task=task,
        source_id=source_id,
        prompt_version=prompt_version,
        model=model,
        sampling=sampling,
        metadata=metadata,
        text=training_text(messages),
    )


def _prepare_empty(directory: Path, kinds: Sequence[ArtifactKind]) -> None:
    """Empty a folder synthesis wrote before; refuse one it did not (a typo in a config must never wipe data)."""
    if not directory.exists():
        return
    if (directory / MANIFEST_NAME).exists():
        try:
            manifest = read_manifest(directory)
        except Nano2Error as exc:
            raise Nano2Error(f"{directory}: unreadable manifest ({exc}); remove the folder or choose another") from None
        if manifest.kind not in kinds or SYNTHETIC_STAGE not in manifest.extra:
            raise Nano2Error(f"{directory}: holds a {manifest.kind} artifact not written by synthesis; choose another")
    else:  # a run killed before its manifest: only folders of Parquet shards
        foreign = [
            p.name
            for p in directory.iterdir()
            if not p.is_dir() or any(not f.name.endswith(".parquet") for f in p.iterdir())
        ]
        if foreign:
            raise Nano2Error(f"{directory}: not a synthetic stage directory (has {foreign[0]}); choose another")
    shutil.rmtree(directory)


def _stats(counts: Mapping[str, int]) -> Stats:
    return Stats(documents=counts["documents"], tokens=counts["tokens"], bytes=counts["bytes"])


class DecisionsOutput:
    """The drop records of one stage artifact (`DECISIONS_SCHEMA`), one shard per step, written as they come."""

    def __init__(self, artifact_dir: Path, stage: str, flush_rows: int = 1024):
        self.artifact_dir = artifact_dir
        self.directory = decisions_dir(artifact_dir)
        self.stage = stage
        self.flush_rows = flush_rows
        _prepare_empty(self.directory, (ArtifactKind.DECISIONS,))
        self._buffers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, step: str, doc_id: str, reason: str, scores: Mapping[str, Any] | None, url: str | None) -> None:
        self.counts[step][reason] += 1
        self._buffers[step].append(
            {
                "doc_id": doc_id,
                "url": url,
                "step": step,
                "kept": False,
                "reason": reason,
                "scores": json.dumps(dict(scores or {}), sort_keys=True, default=str),
            }
        )
        if len(self._buffers[step]) >= self.flush_rows:
            self._flush(step)

    def _flush(self, step: str) -> None:
        rows = self._buffers.pop(step, [])
        if not rows:
            return
        if step not in self._writers:
            folder = step_decisions_dir(self.artifact_dir, step)
            folder.mkdir(parents=True, exist_ok=True)
            self._writers[step] = pq.ParquetWriter(folder / shard_name(0), DECISIONS_SCHEMA)
        self._writers[step].write_table(pa.Table.from_pylist(rows, schema=DECISIONS_SCHEMA))

    def close(
        self, *, name: str, config: Any, config_path: str | None, inputs: list[InputRef], extra: dict[str, Any]
    ) -> Manifest | None:
        """Write the shards and their manifest; None (and no folder) when nothing was dropped."""
        for step in list(self._buffers):
            self._flush(step)
        for writer in self._writers.values():
            writer.close()
        if not self.counts:
            return None
        by_step = {step: Stats(documents=sum(reasons.values())) for step, reasons in sorted(self.counts.items())}
        by_reason: Counter[str] = Counter()
        for reasons in self.counts.values():
            by_reason.update(reasons)
        return write_manifest(
            self.directory,
            kind=ArtifactKind.DECISIONS,
            name=f"{name}-decisions",
            command=current_command(),
            config=config,
            config_path=config_path,
            inputs=inputs,
            stats=OutputStats(
                documents=sum(by_reason.values()),
                by={"step": by_step, "reason": {r: Stats(documents=n) for r, n in sorted(by_reason.items())}},
            ),
            extra={**extra, SYNTHETIC_STAGE: self.stage, "decisions_of": str(self.artifact_dir)},
        )


class StageOutput:
    """One stage artifact being written: rows in subset shards, its drops, and at the end the two manifests.

    The stage directory and its decisions folder are emptied first: a stage's output is a pure function of its
    inputs and the request cache, so a rerun rewrites it completely (and identically).
    """

    kind: ArtifactKind
    schema: pa.Schema

    def __init__(self, directory: str | Path, stage: str, counter: TokenCounter, flush_rows: int = 2048):
        self.directory = Path(directory)
        self.stage = stage
        self.counter = counter
        self.flush_rows = flush_rows
        _prepare_empty(self.directory, (self.kind,))
        self.decisions = DecisionsOutput(self.directory, stage)
        self.directory.mkdir(parents=True)
        self._buffers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.totals = {"documents": 0, "tokens": 0, "bytes": 0}
        self.by: dict[str, dict[str, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: {"documents": 0, "tokens": 0, "bytes": 0})
        )

    @property
    def drops(self) -> dict[str, Counter[str]]:
        return self.decisions.counts

    def drop(
        self, step: str, doc_id: str, reason: str, scores: Mapping[str, Any] | None = None, url: str | None = None
    ) -> None:
        """Record why an input, a request or an answer produced no row (`step`: the task that dropped it)."""
        self.decisions.add(step, doc_id, reason, scores, url)

    def _append(self, row: dict[str, Any], subset: str, tokens: int, text: str, groups: Mapping[str, str]) -> None:
        size = len(text.encode("utf-8"))
        for group, value in {SUBSET_KEY: subset, **groups}.items():
            counts = self.by[group][value]
            counts["documents"] += 1
            counts["tokens"] += tokens
            counts["bytes"] += size
        self.totals["documents"] += 1
        self.totals["tokens"] += tokens
        self.totals["bytes"] += size
        self._buffers[subset].append(row)
        if len(self._buffers[subset]) >= self.flush_rows:
            self._flush(subset)

    def _flush(self, subset: str) -> None:
        rows = self._buffers.pop(subset, [])
        if not rows:
            return
        if subset not in self._writers:
            folder = subset_dir(self.directory, subset)
            folder.mkdir(parents=True, exist_ok=True)
            self._writers[subset] = pq.ParquetWriter(folder / shard_name(0), self.schema)
        self._writers[subset].write_table(pa.Table.from_pylist(rows, schema=self.schema))

    def close(
        self, *, name: str, config: Any, inputs: list[InputRef], extra: dict[str, Any], config_path: str | None
    ) -> Manifest:
        """Write the remaining rows, the decisions and both manifests; returns the stage's manifest."""
        for subset in list(self._buffers):
            self._flush(subset)
        for writer in self._writers.values():
            writer.close()
        decisions = self.decisions.close(name=name, config=config, config_path=config_path, inputs=inputs, extra=extra)
        by = {group: {value: _stats(s) for value, s in sorted(values.items())} for group, values in self.by.items()}
        dropped = {f"{t}/{r}": Stats(documents=n) for t, reasons in self.drops.items() for r, n in reasons.items()}
        if dropped:
            by["dropped"] = dict(sorted(dropped.items()))
        drops = {task: dict(sorted(reasons.items())) for task, reasons in sorted(self.drops.items())}
        return write_manifest(
            self.directory,
            kind=self.kind,
            name=name,
            command=current_command(),
            config=config,
            config_path=config_path,
            inputs=inputs,
            stats=OutputStats(**self.totals, by=by, tokenizer=self.counter.id),
            extra={
                **extra,
                SYNTHETIC_STAGE: self.stage,
                "drops": drops,
                "rows": self.totals["documents"],
                "decisions": None if decisions is None else str(self.decisions.directory),
            },
        )


class DocumentOutput(StageOutput):
    """A document stage's artifact (`DOCUMENT_SCHEMA`, manifest kind documents)."""

    kind = ArtifactKind.DOCUMENTS
    schema = DOCUMENT_SCHEMA

    def add(self, *, doc_id: str, text: str, source: str | None, metadata: Mapping[str, Any], subset: str) -> None:
        """One document: its token count is measured here, its metadata keys are `Meta` fields."""
        tokens = self.counter.count(text)
        record = document_record(doc_id=doc_id, text=text, source=source, token_count=tokens, metadata=metadata)
        self._append(record, subset, tokens, text, {"task": str(metadata.get(Meta.TASK))})


class ChatOutput(StageOutput):
    """A chat stage's artifact (`CHAT_SCHEMA`, manifest kind chat)."""

    kind = ArtifactKind.CHAT
    schema = CHAT_SCHEMA

    def contract_violation(self, row: Mapping[str, Any]) -> str | None:
        """Why the trainer's reader would drop the row (the chat contract's one validator), or None."""
        checked = validate_chat_record(row)
        return checked if isinstance(checked, str) else None

    def add(self, row: dict[str, Any], subset: str) -> bool:
        """Write a row built by the contract's writer; one the trainer would drop is a counted drop instead."""
        reason = self.contract_violation(row)
        if reason is not None:
            self.drop(row["task"], row["id"], f"contract_{reason}")
            return False
        tokens = self.counter.count(row["text"])
        written = encode_metadata(row, **{TOKEN_COUNT: tokens})
        groups = {"task": row["task"], "reasoning": "on" if row["reasoning"] else "off"}
        self._append(written, subset, tokens, row["text"], groups)
        return True


class PreferenceOutput(ChatOutput):
    """The preference stage's artifact (`PREFERENCE_SCHEMA`, manifest kind preference)."""

    kind = ArtifactKind.PREFERENCE
    schema = PREFERENCE_SCHEMA

    def contract_violation(self, row: Mapping[str, Any]) -> str | None:
        """Why DPO's reader would drop the row (the preference contract's one validator), or None."""
        checked = validate_preference_record(row)
        return checked if isinstance(checked, str) else None


# --------------------------------------------------------------------------------------------------- reading


def _shards(directory: str | Path, subset: str | None) -> list[Path]:
    pattern = f"{SUBSET_KEY}={subset if subset is not None else '*'}/*.parquet"
    return sorted(Path(directory).glob(pattern))


def iter_chat_rows(directory: str | Path, subset: str | None = None) -> Iterator[dict[str, Any]]:
    """Chat or preference rows of a stage artifact (subsets in name order), metadata decoded, batch by batch."""
    for path in _shards(directory, subset):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                row["metadata"] = decode_metadata(row["metadata"])
                yield row


def iter_stage_documents(directory: str | Path, subset: str | None = None) -> Iterator[dict[str, Any]]:
    """Documents of a document stage artifact (subsets in name order), each file checked against the contract."""
    for path in _shards(directory, subset):
        file = pq.ParquetFile(path)
        check_document_schema(file.schema_arrow, str(path))
        for batch in file.iter_batches(batch_size=1024):
            yield from batch.to_pylist()


def read_chat_rows(directory: str | Path, subset: str | None = None) -> list[dict[str, Any]]:
    return list(iter_chat_rows(directory, subset))


def read_documents(directory: str | Path, subset: str | None = None) -> list[dict[str, Any]]:
    return list(iter_stage_documents(directory, subset))
