"""The records synthetic/ writes: chat rows as Parquet, drops as decisions, one manifest per stage artifact.

Chat/SFT rows follow the data contract that `train/` reads: `id`, `messages` (list of {role, content}; the last is
the assistant target), `reasoning`, `task`, `source_id`, `prompt_version`, `model`, `sampling` (JSON), `metadata`
(JSON). One more column, `text`, is the row as pretraining text, because the mixtures also read these artifacts as
pretraining sources (`synthetic/rephrase`, `synthetic/reasoning`) and `nano2 audit` reads documents by `text`:
the rephrased document for rephrasing tasks, the document with its appended QA for long-context rows, the
translated pairs for translations, and the contract's training text for reasoning rows. `metadata.token_count`
is that text's length in tokens of the configured tokenizer (what the manifest's stats sum up).

Preference rows (the DPO stage's input) are chat rows of the chosen conversation with `messages` cut to the prompt
turns, plus `chosen` and `rejected` (assistant strings in the target format); their `text` is the chosen
conversation's training text, so token counts mean the same as for the other stages.

Files: `<stage dir>/<key>=<value>/part-00000.parquet` (hive partitions by task or language, so a mixture can name
`synthetic/rephrase/task=diverse_qa`), drops in `<stage dir>/decisions/<task>/*.parquet` (curation's
decisions schema, so `nano2 audit` counts them), and `manifest.json` (kind `synthetic`, stats by partition, task,
reasoning mode and drop reason).
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

from nano2.manifest import InputRef, Manifest, OutputStats, Stats, current_command, write_manifest
from synthetic.tasks.common import TokenCounter

CHAT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("reasoning", pa.bool_()),
        ("task", pa.string()),
        ("source_id", pa.string()),
        ("prompt_version", pa.string()),
        ("model", pa.string()),
        ("sampling", pa.string()),
        ("metadata", pa.string()),
        ("text", pa.string()),
    ]
)
PREFERENCE_SCHEMA = pa.schema([*CHAT_SCHEMA, pa.field("chosen", pa.string()), pa.field("rejected", pa.string())])
MANIFEST_KIND = "synthetic"


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
    text: str | None = None,
) -> dict[str, Any]:
    """One row of the contract (+ `text`, the training text of the chat when not given)."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    if not msgs or msgs[-1]["role"] != "assistant":
        raise ValueError(f"row {row_id}: the last message must be the assistant target")
    return {
        "id": row_id,
        "messages": msgs,
        "reasoning": bool(reasoning),
        "task": task,
        "source_id": source_id,
        "prompt_version": prompt_version,
        "model": model,
        "sampling": json.dumps(dict(sampling or {}), sort_keys=True),
        "metadata": dict(metadata),  # serialised on write, after token_count is added
        "text": training_text(msgs) if text is None else text,
    }


def preference_row(
    *,
    row_id: str,
    prompt: Sequence[Mapping[str, str]],
    chosen: str,
    rejected: str,
    reasoning: bool,
    task: str,
    source_id: str,
    prompt_version: str,
    model: str,
    sampling: Mapping[str, Any] | None,
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """One preference row: `messages` = the prompt turns, `chosen`/`rejected` = the two assistant strings, and
    `text` = the training text of the chosen conversation (what a chat row of it would hold)."""
    if not prompt or prompt[-1]["role"] == "assistant":
        raise ValueError(f"row {row_id}: the prompt turns must not be empty or end with an assistant turn")
    if not rejected.strip() or chosen == rejected:
        raise ValueError(f"row {row_id}: rejected must be a non-empty answer different from chosen")
    row = chat_row(
        row_id=row_id,
        messages=[*prompt, {"role": "assistant", "content": chosen}],
        reasoning=reasoning,
        task=task,
        source_id=source_id,
        prompt_version=prompt_version,
        model=model,
        sampling=sampling,
        metadata=metadata,
    )
    return {**row, "messages": row["messages"][:-1], "chosen": chosen, "rejected": rejected}


def _check_ours(directory: Path) -> None:
    """Refuse to empty a directory that is not a synthetic stage artifact (a typo in output_dir must not wipe data)."""
    from nano2.errors import Nano2Error
    from nano2.manifest import MANIFEST_NAME, read_manifest

    if (directory / MANIFEST_NAME).exists():
        kind = read_manifest(directory).kind
        if kind != MANIFEST_KIND:
            raise Nano2Error(f"{directory}: holds a {kind!r} artifact, not synthetic output; choose another output_dir")
        return
    foreign = [p.name for p in directory.iterdir() if not (p.is_dir() and ("=" in p.name or p.name == "decisions"))]
    if foreign:
        raise Nano2Error(f"{directory}: not a synthetic stage directory (has {foreign[0]}); choose another output_dir")


def _stats(d: dict[str, int]) -> Stats:
    return Stats(documents=d["documents"], tokens=d["tokens"], bytes=d["bytes"])


class StageOutput:
    """Collects one stage's rows and drops, writes them, and writes the manifest.

    The stage directory is emptied first: a stage's output is a pure function of its inputs and the request
    cache, so a rerun rewrites it completely (and identically).
    """

    def __init__(
        self,
        directory: str | Path,
        partition_key: str,
        counter: TokenCounter,
        flush_rows: int = 2048,
        schema: pa.Schema = CHAT_SCHEMA,
    ):
        self.directory = Path(directory)
        self.schema = schema
        self.partition_key = partition_key
        self.counter = counter
        self.flush_rows = flush_rows
        if self.directory.exists():
            _check_ours(self.directory)
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)
        self._buffers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._decisions: dict[str, Any] = {}
        self.totals = {"documents": 0, "tokens": 0, "bytes": 0}
        self.by: dict[str, dict[str, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: {"documents": 0, "tokens": 0, "bytes": 0})
        )
        self.drops: dict[str, Counter[str]] = defaultdict(Counter)

    # ------------------------------------------------------------------------------------------- rows
    def add(self, row: dict[str, Any], partition: str) -> None:
        tokens = self.counter.count(row["text"])
        size = len(row["text"].encode("utf-8"))
        row = {**row, "metadata": json.dumps({**row["metadata"], "token_count": tokens}, sort_keys=True, default=str)}
        groups = {self.partition_key: partition, "task": row["task"], "reasoning": "on" if row["reasoning"] else "off"}
        for group, value in groups.items():
            g = self.by[group][value]
            g["documents"] += 1
            g["tokens"] += tokens
            g["bytes"] += size
        self.totals["documents"] += 1
        self.totals["tokens"] += tokens
        self.totals["bytes"] += size
        self._buffers[partition].append(row)
        if len(self._buffers[partition]) >= self.flush_rows:
            self._flush(partition)

    def _flush(self, partition: str) -> None:
        rows = self._buffers.pop(partition, [])
        if not rows:
            return
        if partition not in self._writers:
            folder = self.directory / f"{self.partition_key}={partition}"
            folder.mkdir(parents=True, exist_ok=True)
            self._writers[partition] = pq.ParquetWriter(folder / "part-00000.parquet", self.schema)
        self._writers[partition].write_table(pa.Table.from_pylist(rows, schema=self.schema))

    # ------------------------------------------------------------------------------------------- drops
    def drop(
        self, task: str, doc_id: str, reason: str, scores: Mapping[str, Any] | None = None, url: str | None = None
    ) -> None:
        from datatrove.data import Document

        from curation.decisions import DecisionsWriter, mark_drop

        self.drops[task][reason] += 1
        writer = self._decisions.get(task)
        if writer is None:
            writer = self._decisions[task] = DecisionsWriter(str(self.directory), step=task).__enter__()
        doc = Document(text="", id=doc_id, metadata={"url": url} if url else {})
        writer.write(mark_drop(doc, reason, dict(scores or {})), rank=0)

    # ------------------------------------------------------------------------------------------- finish
    def close(
        self, *, name: str, config: Any, inputs: list[InputRef], extra: dict[str, Any], config_path: str | None
    ) -> Manifest:
        for partition in list(self._buffers):
            self._flush(partition)
        for writer in self._writers.values():
            writer.close()
        for writer in self._decisions.values():
            writer.__exit__(None, None, None)
        by = {group: {value: _stats(s) for value, s in sorted(values.items())} for group, values in self.by.items()}
        dropped = {f"{t}/{r}": Stats(documents=n) for t, reasons in self.drops.items() for r, n in reasons.items()}
        if dropped:
            by["dropped"] = dict(sorted(dropped.items()))
        drops = {task: dict(sorted(reasons.items())) for task, reasons in sorted(self.drops.items())}
        return write_manifest(
            self.directory,
            kind=MANIFEST_KIND,
            name=name,
            command=current_command(),
            config=config,
            config_path=config_path,
            inputs=inputs,
            stats=OutputStats(**self.totals, by=by),
            extra={**extra, "drops": drops, "rows": self.totals["documents"]},
        )


def iter_rows(directory: str | Path, where: str | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a stage artifact (partitions in name order, files in order), metadata parsed, streamed batch by
    batch; `where` selects one 'key=value' partition."""
    root = Path(directory)
    files = sorted(p for p in root.glob("*=*/*.parquet"))
    if where is not None:
        files = [p for p in files if p.parent.name == where]
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                row["metadata"] = json.loads(row["metadata"] or "{}")
                yield row


def read_rows(directory: str | Path, where: str | None = None) -> list[dict[str, Any]]:
    return list(iter_rows(directory, where))
