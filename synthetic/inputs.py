"""Read input documents and problems: contract documents (`nano2.contracts.documents`) or other Parquet/JSONL(.gz).

Files are listed in sorted order (so a rerun sees the same documents in the same order) and read with datatrove's
readers, whose adapter flattens a `metadata` column or object into `Document.metadata` (a contract document's
`Meta` fields, `source` and `token_count` among them). Drop decisions never live inside a document folder (the
contract keeps them beside it), so every file below an input is data. A document without text is skipped and
counted by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nano2.errors import Nano2Error
from synthetic.config import InputConfig, ProblemInput

_PARQUET = (".parquet",)
_JSONL = (".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".jsonl.zst")


def _metadata(doc) -> dict[str, Any]:
    """The row's own fields; datatrove's machine-specific `file_path` is left out so rows are portable."""
    return {k: v for k, v in doc.metadata.items() if k != "file_path"}


def input_name(spec: InputConfig) -> str:
    """What a generated document names as its `source`: the input folder's (or file's) name, which does not depend
    on where the run lives, so a run moved or repeated elsewhere writes the same bytes."""
    return Path(spec.path).name


@dataclass
class SourceDoc:
    """One input document: `source` names the input it was read from (`input_name`)."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def _kind(path: Path, fmt: str) -> str | None:
    if fmt != "auto":
        return fmt
    name = path.name.lower()
    if name.endswith(_PARQUET):
        return "parquet"
    if name.endswith(_JSONL):
        return "jsonl"
    return None


def input_files(spec: InputConfig) -> list[Path]:
    """The data files of an input, sorted; an input that names nothing readable is an error."""
    root = Path(spec.path)
    if not root.exists():
        raise Nano2Error(f"input {root}: not found")
    if root.is_file():
        files = [root]
    else:
        pattern = spec.glob or "**/*"
        files = sorted(p for p in root.glob(pattern) if p.is_file() and not p.name.startswith("."))
        files = [p for p in files if _kind(p, spec.format) is not None]
    if not files:
        raise Nano2Error(f"input {root}: no Parquet or JSONL files (glob {spec.glob or '**/*'})")
    for p in files:
        if _kind(p, spec.format) is None:
            raise Nano2Error(f"input {p}: unsupported file type; expected .parquet or .jsonl(.gz)")
    return files


def _reader(path: Path, spec: InputConfig):
    from datatrove.pipeline.readers import JsonlReader, ParquetReader

    cls = ParquetReader if _kind(path, spec.format) == "parquet" else JsonlReader
    return cls(str(path.parent), text_key=spec.text_key, id_key=spec.id_key)


def iter_documents(spec: InputConfig) -> Iterator[SourceDoc]:
    """Documents of one input, at most `spec.limit`, ids made unique per file when the data has none."""
    seen = 0
    for path in input_files(spec):
        reader = _reader(path, spec)
        for doc in reader.read_file(path.name):
            if spec.limit is not None and seen >= spec.limit:
                return
            seen += 1
            yield SourceDoc(
                id=_doc_id(doc.id, path), text=doc.text or "", metadata=_metadata(doc), source=input_name(spec)
            )


def _doc_id(raw: Any, path: Path) -> str:
    """The row's id, or `<file stem>/<row number>` when the data has no id field (datatrove's default id)."""
    text = str(raw)
    stem = path.name.split(".")[0]
    return f"{stem}/{text.rsplit('/', 1)[-1]}" if text.startswith(f"{path.name}/") else text


def _int_id(value: Any) -> int | None:
    try:
        return int(str(value).rsplit("/", 1)[-1])
    except ValueError:
        return None


def iter_problems(spec: ProblemInput) -> Iterator[SourceDoc]:
    """Problems of one input; rows outside `id_range` are skipped before `limit` counts them."""
    seen = 0
    for path in input_files(spec):
        reader = _reader(path, spec)
        for doc in reader.read_file(path.name):
            if spec.id_range is not None:
                number = _int_id(doc.id)
                if number is None or not spec.id_range[0] <= number <= spec.id_range[1]:
                    continue
            if spec.limit is not None and seen >= spec.limit:
                return
            seen += 1
            doc_id = _doc_id(doc.id, path)
            if "/" not in doc_id:  # ids from an id field: name the file, since problem sets share numbering
                doc_id = f"{path.name.split('.')[0]}/{doc_id}"
            yield SourceDoc(id=doc_id, text=doc.text or "", metadata=_metadata(doc), source=input_name(spec))
