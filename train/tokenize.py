"""Documents -> token shards (`nano2 train tokenize`): Megatron .bin/.idx per file, a `tokens` manifest per artifact.

Each INPUT is an artifact directory of Parquet/JSONL documents (curated/ or synthetic/ output). Its shards land at
the same place under OUT relative to `--data-root`, key=value partitions included, so a mixture spec written against
the curated data root (`curated/web/subset=medium`) resolves unchanged against the tokenized one: the manifest's
`stats.by` carries the token count of every partition, which is what `mixtures.sources.read_source_tokens` reads.

Rows become text by one rule:
- a row with the text field (`text` by default) is that text;
- a chat row (`messages`, the last one the assistant target) is `chat_training_text`: the prompt rendered with the
  chat template and generation prompt, then the target (its leading THINK_PREFIX dropped for reasoning-on rows, since
  the prompt already ends with it), then "\\n<SPECIAL_12>\\n";
- a preference row (`messages` holding only the prompt, plus `chosen`/`rejected`) trains on `chosen`.
Every document ends with EOS, so documents packed into one training sequence stay separated. Rows without usable
text are dropped and counted by reason (`extra.dropped` in the manifest); nothing is dropped silently.

Scale-out: an artifact's files are the unit of work. They are dealt round-robin to `tasks` datatrove tasks
(`TokenizeFiles`, a pipeline step run by `curation.executors.make_executor`: local, Slurm or Ray, `workers` at
once). Each task writes the shards of its files (one `.bin/.idx` pair per input file, so the shards and every
partition's counts are the same for any task count) and a per-rank report; the driver merges the reports into the
artifact's manifest once every rank has reported. The state (datatrove logs, completions, reports) lives beside the
artifact in `.<name>.tokenize/`: a killed run rerun with the same task count redoes only unfinished tasks; a Slurm
submission returns at once and a rerun after the jobs finish writes the manifest. Why our own step rather than
datatrove's `MegatronDocumentTokenizer`: that step writes one file per rank with its own index layout and (in
0.10.1) no EOS-only post-processing or chat-row rule; ours writes the one shard format of
`nano2.contracts.megatron` that training reads, per input file, so partitions keep their paths.
`benchmarks/bench_tokenize.py` measures both on the same documents.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.executors import ExecutorConfig, make_executor
from model.tokenizer import chat_training_text, load_tokenizer
from nano2.contracts.megatron import IndexedShardWriter, token_dtype_for_vocab
from nano2.contracts.tokens import tokenizer_id
from nano2.errors import Nano2Error
from nano2.manifest import (
    MANIFEST_NAME,
    ArtifactKind,
    OutputStats,
    Stats,
    current_command,
    find_manifest,
    hash_file,
    input_ref,
    write_manifest,
)

DOCUMENT_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".ndjson")
EOS_TOKEN = "</s>"
ENCODE_BATCH = 512


@dataclass
class ArtifactReport:
    """What tokenizing one input artifact wrote."""

    input_dir: Path
    output_dir: Path
    files: int = 0
    documents: int = 0
    tokens: int = 0
    chat_rows: int = 0
    dropped: Counter = field(default_factory=Counter)
    by: dict[str, dict[str, Stats]] = field(default_factory=dict)

    @property
    def empty_reason(self) -> str | None:
        """Why the artifact holds no documents (it is still written: downstream stages see an empty source)."""
        if self.documents:
            return None
        if self.files == 0:
            return "the input artifact has no document files"
        if self.dropped:
            return f"every row was dropped ({sum(self.dropped.values())} rows, see extra.dropped)"
        return "the input files hold no rows"


def _is_document_file(path: Path) -> bool:
    return path.name.endswith(DOCUMENT_SUFFIXES) and not path.name.startswith(".")


def document_files(artifact_dir: Path, glob: str | None = None) -> list[Path]:
    """Document files of an artifact: not in decisions/, dot folders or nested artifacts (their own manifest)."""
    found = []
    for path in sorted(artifact_dir.glob(glob) if glob else artifact_dir.rglob("*")):
        if not path.is_file() or not _is_document_file(path):
            continue
        rel_dirs = path.relative_to(artifact_dir).parts[:-1]
        if any(p.startswith(".") for p in rel_dirs):  # drop decisions live beside data, never inside
            continue
        nested = [artifact_dir.joinpath(*rel_dirs[: i + 1]) for i in range(len(rel_dirs))]
        if any((d / MANIFEST_NAME).exists() for d in nested):
            continue
        found.append(path)
    return found


def _shard_prefix(path: Path) -> str:
    name = path.name
    for suffix in sorted(DOCUMENT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _row_text(row: Mapping[str, Any], text_field: str) -> tuple[str | None, str | None, bool]:
    """(text, drop reason, is_chat) for one row."""
    if text_field in row and row[text_field] is not None:
        value = row[text_field]
        if not isinstance(value, str):
            return None, f"{text_field} is not a string", False
        return (value, None, False) if value.strip() else (None, f"empty {text_field}", False)
    messages = row.get("messages")
    if messages is None:
        return None, f"no {text_field} and no messages", False
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except ValueError:
            return None, "messages is not a list of turns", True
    chosen = row.get("chosen")
    if isinstance(chosen, str) and chosen.strip():
        messages = [*messages, {"role": "assistant", "content": chosen}]
    try:
        prompt, target = chat_training_text(messages)
    except Nano2Error as exc:
        return None, f"bad chat row: {exc}", True
    return prompt + target, None, True


def _parquet_rows(path: Path, text_field: str) -> Iterator[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise Nano2Error(f"{path}: not a readable Parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    columns = [c for c in (text_field, "messages", "chosen") if c in names]
    if text_field not in names and "messages" not in names:
        raise Nano2Error(f"{path}: no {text_field!r} or 'messages' column (columns: {', '.join(names)})")
    try:
        for batch in parquet.iter_batches(columns=columns, batch_size=1024):
            yield from batch.to_pylist()
    finally:
        parquet.close()


def _jsonl_rows(path: Path, counter: Counter) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                counter["invalid JSON line"] += 1
                continue
            if not isinstance(row, dict):
                counter["JSON line is not an object"] += 1
                continue
            yield row


def _partition(rel_dirs: tuple[str, ...]) -> list[tuple[str, str]]:
    return [tuple(p.split("=", 1)) for p in rel_dirs if "=" in p]  # type: ignore[misc]


class ShardTokenizer:
    """A tokenizers.Tokenizer with the EOS id and shard dtype the recipe writes."""

    def __init__(self, path: str | Path, eos_token: str = EOS_TOKEN):
        self.path = Path(path)
        self.file = self.path / "tokenizer.json" if self.path.is_dir() else self.path
        self.tok = load_tokenizer(self.path)
        eos = self.tok.token_to_id(eos_token)
        if eos is None:
            raise Nano2Error(f"{self.file}: the tokenizer has no EOS token {eos_token!r}")
        self.eos_id = eos
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
        self.dtype = token_dtype_for_vocab(self.vocab_size)

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of each text followed by EOS (no BOS, no other post-processing)."""
        encodings = self.tok.encode_batch(texts, add_special_tokens=False)
        return [np.asarray([*enc.ids, self.eos_id], dtype=np.int64) for enc in encodings]

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.file),
            "sha256": hash_file(self.file),
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
        }


def state_dir(output_dir: Path) -> Path:
    """Where a tokenize run keeps its datatrove state and per-rank reports: beside the artifact, never inside it."""
    return output_dir.parent / f".{output_dir.name}.tokenize"


class TokenizeFiles(PipelineStep):
    """Tokenize this rank's share of an artifact's files (round-robin by sorted path) into one shard per file, and
    write the rank's report (files, documents, tokens, chat rows, drops, per-partition counts) as JSON."""

    name = "🔢 Tokenize files"
    type = "🔢 - TOKENIZER"

    def __init__(self, input_dir: Path, output_dir: Path, files: list[str], tokenizer: str, text_field: str):
        super().__init__()
        self.input_dir, self.output_dir, self.files = str(input_dir), str(output_dir), list(files)
        self.tokenizer, self.text_field = str(tokenizer), text_field

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        tokenizer = ShardTokenizer(self.tokenizer)
        input_dir, output_dir = Path(self.input_dir), Path(self.output_dir)
        report: dict[str, Any] = {"files": 0, "documents": 0, "tokens": 0, "chat_rows": 0, "dropped": Counter(),
                                  "by": {}}  # fmt: skip
        for rel_name in self.files[rank::world_size]:
            rel = Path(rel_name)
            writer = IndexedShardWriter(output_dir / rel.parent / _shard_prefix(rel), tokenizer.dtype)
            try:
                with self.track_time():
                    documents, tokens, chat = _tokenize_file(
                        input_dir / rel, writer, tokenizer, self.text_field, report["dropped"]
                    )
            except BaseException:
                writer.abort()
                raise
            shard = writer.close()
            report["files"] += 1
            report["documents"] += documents
            report["tokens"] += tokens
            report["chat_rows"] += chat
            self.stat_update("files")
            self.stat_update("documents", value=documents)
            self.stat_update("tokens", value=tokens)
            for key, value in _partition(rel.parts[:-1]):
                group = report["by"].setdefault(key, {}).setdefault(value, Counter())
                group.update(documents=documents, tokens=tokens, bytes=shard.bin_path.stat().st_size)
        path = state_dir(output_dir) / "reports" / f"{rank:05d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(report, sort_keys=True))
        partial.replace(path)
        if data:
            yield from data


def _merge_reports(report: ArtifactReport, files: list[dict[str, Any]]) -> None:
    by: dict[str, dict[str, Counter]] = {}
    for rank in files:
        report.files += rank["files"]
        report.documents += rank["documents"]
        report.tokens += rank["tokens"]
        report.chat_rows += rank["chat_rows"]
        report.dropped.update(rank["dropped"])
        for key, groups in rank["by"].items():
            for value, counts in groups.items():
                by.setdefault(key, {}).setdefault(value, Counter()).update(counts)
    report.by = {
        key: {value: Stats(**dict(counts)) for value, counts in sorted(groups.items())} for key, groups in by.items()
    }


def tokenize_artifact(
    input_dir: Path,
    output_dir: Path,
    tokenizer: ShardTokenizer,
    text_field: str = "text",
    glob: str | None = None,
    overwrite: bool = False,
    progress=None,
    executor: ExecutorConfig | None = None,
) -> ArtifactReport | None:
    """Tokenize one artifact into `output_dir` (shards mirror the input's layout) and write its `tokens` manifest;
    None when the tasks were submitted to Slurm (rerun after they finish to write the manifest)."""
    if not input_dir.is_dir():
        raise Nano2Error(f"{input_dir}: input must be a directory of Parquet/JSONL documents")
    files = document_files(input_dir, glob)
    # an artifact that kept nothing is fine (zero tokens); a folder without a manifest or documents is a typo
    if not files and not (input_dir / MANIFEST_NAME).exists():
        raise Nano2Error(
            f"{input_dir}: no document files ({', '.join(DOCUMENT_SUFFIXES)})" + (f" matching {glob!r}" if glob else "")
        )
    state = state_dir(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        if overwrite:
            shutil.rmtree(output_dir)
            shutil.rmtree(state, ignore_errors=True)
        elif (output_dir / MANIFEST_NAME).exists() or not state.exists():
            raise Nano2Error(f"{output_dir}: already exists; pass --overwrite to replace it")
        # else: an unfinished run of ours (state beside it): resume, datatrove skips the tasks that completed
    executor = executor or ExecutorConfig()
    output_dir.mkdir(parents=True, exist_ok=True)
    rel_files = [str(path.relative_to(input_dir)) for path in files]
    step = TokenizeFiles(input_dir, output_dir, rel_files, str(tokenizer.path), text_field)
    task = progress.add_task(f"{input_dir.name}", total=None) if progress is not None else None
    make_executor([step], executor, state / "logs").run()
    reports = [state / "reports" / f"{rank:05d}.json" for rank in range(executor.tasks)]
    if not all(path.exists() for path in reports):
        if executor.kind == "slurm":
            return None
        missing = sum(not path.exists() for path in reports)
        raise Nano2Error(f"{output_dir}: {missing} of {executor.tasks} tokenize tasks did not finish (see {state})")
    report = ArtifactReport(input_dir=input_dir, output_dir=output_dir)
    _merge_reports(report, [json.loads(path.read_text()) for path in reports])
    report.dropped = Counter(dict(report.dropped))
    _write_tokens_manifest(report, tokenizer, text_field, glob)
    shutil.rmtree(state, ignore_errors=True)
    if task is not None:
        progress.update(task, total=1, completed=1)
    return report


def _tokenize_file(
    path: Path, writer: IndexedShardWriter, tokenizer: ShardTokenizer, text_field: str, dropped: Counter
) -> tuple[int, int, int]:
    rows = _parquet_rows(path, text_field) if path.name.endswith(".parquet") else _jsonl_rows(path, dropped)
    documents = tokens = chat = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal documents, tokens
        for ids in tokenizer.encode_documents(batch):
            writer.add_document(ids)
            documents += 1
            tokens += int(ids.size)
        batch.clear()

    for row in rows:
        text, reason, is_chat = _row_text(row, text_field)
        if text is None:
            dropped[reason] += 1
            continue
        chat += is_chat
        batch.append(text)
        if len(batch) >= ENCODE_BATCH:
            flush()
    flush()
    return documents, tokens, chat


def _write_tokens_manifest(
    report: ArtifactReport, tokenizer: ShardTokenizer, text_field: str, glob: str | None
) -> None:
    found = find_manifest(report.input_dir)
    name = f"{found[1].name}-tokens" if found is not None else report.output_dir.name
    bin_bytes = sum(p.stat().st_size for p in report.output_dir.rglob("*.bin"))
    write_manifest(
        report.output_dir,
        kind=ArtifactKind.TOKENS,
        name=name,
        command=current_command(),
        config={"text_field": text_field, "glob": glob, "tokenizer": str(tokenizer.file)},
        inputs=[input_ref(report.input_dir), input_ref(tokenizer.file)],
        stats=OutputStats(
            documents=report.documents,
            tokens=report.tokens,
            bytes=bin_bytes,
            by=report.by,
            tokenizer=tokenizer_id(tokenizer.file),
        ),
        extra={
            "format": "megatron-indexed",
            "dtype": np.dtype(tokenizer.dtype).name,
            "tokenizer": tokenizer.describe(),
            "files": report.files,
            "chat_rows": report.chat_rows,
            "dropped": dict(sorted(report.dropped.items())),
            "empty_reason": report.empty_reason,
        },
    )


def output_location(input_dir: Path, data_roots: Path | Sequence[Path], out_root: Path) -> Path:
    """Where an input's shards go: OUT / (INPUT relative to the innermost data root that holds it).

    Several roots let one run tokenize documents (`RUN/data/...`) and chat rows (`RUN/chat/...`, kept out of the
    document tree) into one token tree: with roots `RUN/data` and `RUN`, `RUN/data/curated/web` -> `OUT/curated/web`
    and `RUN/chat/synthetic/truncated` -> `OUT/chat/synthetic/truncated`.
    """
    roots = [data_roots] if isinstance(data_roots, Path) else list(data_roots)
    resolved = input_dir.resolve()
    holding = [root.resolve() for root in roots if resolved.is_relative_to(root.resolve())]
    if not holding:
        listed = ", ".join(str(r) for r in roots)
        raise Nano2Error(
            f"{input_dir}: not under --data-root {listed}; the output mirrors the input's path relative to it"
        )
    innermost = max(holding, key=lambda root: len(root.parts))
    return out_root / resolved.relative_to(innermost)


def tokenize_inputs(
    inputs: Sequence[Path],
    out_root: Path,
    tokenizer_path: Path,
    data_root: Path | Sequence[Path] = Path("."),
    text_field: str = "text",
    glob: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    executor: ExecutorConfig | None = None,
) -> list[ArtifactReport]:
    """Tokenize several artifacts; every location is checked before anything is written. Artifacts submitted to
    Slurm (not finished here) are left out of the returned reports."""
    tokenizer = ShardTokenizer(tokenizer_path)
    targets = [(Path(i), output_location(Path(i), data_root, out_root)) for i in inputs]
    for input_dir, output_dir in targets:
        if not input_dir.is_dir():
            raise Nano2Error(f"{input_dir}: input must be a directory of Parquet/JSONL documents")
        unfinished = not (output_dir / MANIFEST_NAME).exists() and state_dir(output_dir).exists()
        if output_dir.exists() and any(output_dir.iterdir()) and not overwrite and not unfinished:
            raise Nano2Error(f"{output_dir}: already exists; pass --overwrite to replace it")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nano2.console import make_console

    reports = []
    with Progress(
        TextColumn("[bold]tokenize[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=make_console(),
        disable=not show_progress,
    ) as progress:
        for input_dir, output_dir in targets:
            report = tokenize_artifact(
                input_dir, output_dir, tokenizer, text_field, glob, overwrite, progress=progress, executor=executor
            )
            if report is not None:
                reports.append(report)
    return reports
