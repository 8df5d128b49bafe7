"""The datatrove reader: one Document per file of each repository, with repo, path, size and git blob hash (the
repository is also the document's `source`).

Nothing is dropped here, because the license step that follows must see every license file of a repository,
including ones that will not be kept as code. Files that cannot be code are marked instead
(`metadata["input_issue"]`: binary, too_large, undecodable, vendored_path, generated_file, unreadable, and symlink,
symlink_dangling, symlink_loop, symlink_outside, symlink_directory for links not followed),
read only as far as needed, and dropped with that reason by `InputIssueFilter` right after the license step.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from curation.code.sources import SourceConfig, SourceFile
from nano2.contracts.documents import SOURCE, Meta
from nano2.errors import Nano2Error

# Path components of trees that are someone else's code or build output (linguist's vendor list, abridged).
VENDORED_DIRS = frozenset([
    "node_modules", "bower_components", "vendor", "vendors", "third_party", "third-party", "thirdparty", "3rdparty",
    "_vendor", "__pycache__", ".tox", ".nox", ".venv", "venv", "site-packages", ".eggs", ".mypy_cache",
    ".pytest_cache", ".idea", ".vscode",
])  # fmt: skip
GENERATED_SUFFIXES = (
    ".min.js", ".min.css", ".map", "_pb2.py", "_pb2_grpc.py", "_pb2.pyi", ".pb.go", ".pb.h", ".pb.cc", ".g.dart",
    ".designer.cs", "-lock.json", ".lock",
)  # fmt: skip
GENERATED_NAMES = frozenset({"pnpm-lock.yaml", "go.sum"})
BINARY_SUFFIXES = frozenset([
    ".so", ".dylib", ".dll", ".exe", ".o", ".a", ".lib", ".obj", ".pyc", ".pyo", ".pyd", ".class", ".jar", ".war",
    ".whl", ".egg", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".png", ".jpg", ".jpeg", ".gif",
    ".bmp", ".ico", ".webp", ".tif", ".tiff", ".pdf", ".ttf", ".otf", ".woff", ".woff2", ".eot", ".mp3", ".mp4",
    ".wav", ".ogg", ".avi", ".mov", ".npy", ".npz", ".pkl", ".pickle", ".pt", ".bin", ".dat", ".db", ".sqlite",
    ".parquet", ".arrow", ".onnx", ".safetensors", ".h5", ".mo",
])  # fmt: skip
BINARY_SNIFF_BYTES = 8192
INPUT_ISSUE_KEY = "input_issue"  # working metadata keys: why a file cannot be code, and the error behind it
INPUT_DETAIL_KEY = "input_detail"


@dataclass(frozen=True)
class InputLimits:
    max_file_bytes: int = 1_000_000
    drop_vendored: bool = True


def git_blob_sha1(data: bytes) -> str:
    """The id git gives this content (`git hash-object`), the same as The Stack's `blob_id`."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def path_issue(path: str, drop_vendored: bool = True) -> str | None:
    """An issue visible from the path alone: a vendored tree, a generated file or a binary extension."""
    pure = PurePosixPath(path)
    name = pure.name.lower()
    if drop_vendored and any(part.lower() in VENDORED_DIRS for part in pure.parts[:-1]):
        return "vendored_path"
    if drop_vendored and (name in GENERATED_NAMES or name.endswith(GENERATED_SUFFIXES)):
        return "generated_file"
    if pure.suffix.lower() in BINARY_SUFFIXES:
        return "binary"
    return None


def decode_text(data: bytes) -> str | None:
    """UTF-8 text, or text in the encoding cchardet is confident about; None for undecodable bytes."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    import cchardet

    guess = cchardet.detect(data[:65536])
    encoding, confidence = guess.get("encoding"), guess.get("confidence") or 0.0
    if not encoding or confidence < 0.5:
        return None
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def file_document(repo: str, source_file: SourceFile, limits: InputLimits) -> Document:
    """The Document of one file: text when it is readable text, else an input issue and no text."""
    metadata = {SOURCE: repo, Meta.REPO: repo, Meta.PATH: source_file.path, Meta.SIZE: source_file.size,
                Meta.BLOB_HASH: None}  # fmt: skip
    doc = Document(text="", id=f"{repo}/{source_file.path}", metadata=metadata)
    if source_file.issue or source_file.is_symlink:  # a link the source could not follow inside the repository
        metadata[INPUT_ISSUE_KEY] = source_file.issue or "symlink"
        return doc
    issue = path_issue(source_file.path, limits.drop_vendored)
    if issue is None and source_file.size > limits.max_file_bytes:
        issue = "too_large"
    if issue is not None:
        metadata[INPUT_ISSUE_KEY] = issue
        return doc
    try:
        data = source_file.read()
    except OSError as exc:
        metadata[INPUT_ISSUE_KEY] = "unreadable"
        metadata[INPUT_DETAIL_KEY] = str(exc)[:300]
        return doc
    metadata[Meta.SIZE] = len(data)
    if len(data) > limits.max_file_bytes:
        metadata[INPUT_ISSUE_KEY] = "too_large"
        return doc
    metadata[Meta.BLOB_HASH] = git_blob_sha1(data)
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        metadata[INPUT_ISSUE_KEY] = "binary"
        return doc
    text = decode_text(data)
    if text is None:
        metadata[INPUT_ISSUE_KEY] = "undecodable"
        return doc
    doc.text = text
    metadata[INPUT_ISSUE_KEY] = None
    return doc


class CodeRepositoryReader(PipelineStep):
    """Reads the source's units assigned to this rank and yields every file of each repository, in path order."""

    name = "📖 code repositories"
    type = "📖 - READER"

    def __init__(self, source: SourceConfig, limits: InputLimits | None = None):
        super().__init__()
        self.source = source
        self.limits = limits or InputLimits()

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        for unit in self.source.units()[rank::world_size]:
            yield from self._unit_documents(unit)

    def _unit_documents(self, unit: str) -> Iterator[Document]:
        try:
            repositories = [
                (repo, list(files)) for repo, files in self.source.repositories(unit, self.limits.max_file_bytes)
            ]
        except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, ValueError, Nano2Error) as exc:
            self.stat_update("unreadable_units")
            doc = Document(text="", id=unit, metadata={SOURCE: unit, Meta.REPO: unit, Meta.PATH: "", Meta.SIZE: 0,
                                                      Meta.BLOB_HASH: None})  # fmt: skip
            doc.metadata[INPUT_ISSUE_KEY] = "unreadable"
            doc.metadata[INPUT_DETAIL_KEY] = f"{type(exc).__name__}: {exc}"[:300]
            yield doc
            return
        for repo, files in repositories:
            self.stat_update("repositories")
            for source_file in files:
                with self.track_time():
                    doc = file_document(repo, source_file, self.limits)
                self.stat_update("files")
                yield doc
