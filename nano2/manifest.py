"""Lineage manifests: the `manifest.json` written beside every artifact directory.

One small schema for every stage: what the artifact is (kind, name), who made it (command + config and its hash),
from which code (git commit, dirty flag, hash of the uncommitted diff), from what (input paths with their manifest
ids or content hashes), and what is in it (documents, tokens, bytes, overall and by any grouping, plus the files).
`nano2 audit` loads these into DuckDB; `mixtures` reads source token counts from them.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import subprocess
from enum import StrEnum
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nano2.contracts.shards import RUN_STATE_DIR
from nano2.errors import ConfigError, MissingManifestError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
_HASH_CHUNK = 1 << 20


class ArtifactKind(StrEnum):
    """What an artifact is: the closed list of `kind`s a manifest may carry (`nano2 audit` groups by it)."""

    DOCUMENTS = "documents"  # document folders of the contract (nano2.contracts.documents): curated or synthetic
    DECISIONS = "decisions"  # drop records (nano2.contracts.shards.DECISIONS_SCHEMA)
    CHAT = "chat"  # chat rows (nano2.contracts.chat.CHAT_SCHEMA): SFT data
    PREFERENCE = "preference"  # preference rows (nano2.contracts.chat.PREFERENCE_SCHEMA): DPO data
    QUALITY_CLASSIFIER = "quality-classifier"
    QUALITY_CLASSIFIER_SET = "quality-classifier-set"
    TOKENIZER = "tokenizer"
    TOKENS = "tokens"  # Megatron .bin/.idx shards (nano2.contracts.megatron)
    PLAN = "plan"
    CHECKPOINT = "checkpoint"
    TRAIN_STATE = "train-state"
    IMPORTANCE = "importance"
    NAS = "nas"
    EVAL = "eval"
    EVAL_BUDGET = "eval-budget"
    EVAL_THROUGHPUT = "eval-throughput"


class Stats(BaseModel):
    """Counts for an artifact or one group of it; None means the producer did not measure it."""

    model_config = ConfigDict(extra="forbid")
    documents: int | None = None
    tokens: int | None = None
    bytes: int | None = None


class OutputStats(Stats):
    """Totals plus the same counts by any grouping the producer chooses (quality level, license, language...)."""

    by: dict[str, dict[str, Stats]] = Field(default_factory=dict)
    tokenizer: str | None = Field(
        None, description="the tokenizer every `tokens` count here is measured in (nano2.contracts.tokens.tokenizer_id)"
    )


class Producer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str
    config: Any = None
    config_path: str | None = None
    config_hash: str | None = None


class CodeVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    package_version: str
    commit: str | None = None
    dirty: bool = False
    diff_hash: str | None = None


class InputRef(BaseModel):
    """An input: its path (relative to the run dir inside a recipe run, see `recorded_path`) and either the id of
    its manifest or a hash of its content."""

    model_config = ConfigDict(extra="forbid")
    path: str
    manifest_id: str | None = None
    content_hash: str | None = None


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    bytes: int
    sha256: str | None = None


class TokenizerInfo(BaseModel):
    """The training tokenizer a token artifact was made with (checked against the model before training)."""

    model_config = ConfigDict(extra="forbid")
    path: str
    sha256: str
    vocab_size: int
    eos_id: int


class TokensExtra(BaseModel):
    """`extra` of a `tokens` manifest: the shard format and the tokenizer behind its counts."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["megatron-indexed"] = "megatron-indexed"
    dtype: str | None = None
    tokenizer: TokenizerInfo | None = None
    files: int = 0
    chat_rows: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)
    empty_reason: str | None = None  # why no document was tokenized (the artifact is still written)


# Kinds whose `extra` has a schema: validated when written and when read, so a reader gets typed fields and a
# producer's typo is an error, not a silently missing key. Other kinds keep a free-form `extra` for now.
KIND_EXTRAS: dict[ArtifactKind, type[BaseModel]] = {
    ArtifactKind.TOKENS: TokensExtra,
}


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = SCHEMA_VERSION
    id: str
    kind: ArtifactKind
    name: str
    created_at: str
    producer: Producer
    code: CodeVersion
    inputs: list[InputRef] = Field(default_factory=list)
    stats: OutputStats = Field(default_factory=OutputStats)
    files: list[FileEntry] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _typed_extra(self) -> Manifest:
        model = KIND_EXTRAS.get(self.kind)
        if model is not None:
            model.model_validate(self.extra)
        return self

    def typed_extra(self) -> BaseModel | None:
        """`extra` as its kind's model (`KIND_EXTRAS`), or None for a kind without one."""
        model = KIND_EXTRAS.get(self.kind)
        return None if model is None else model.model_validate(self.extra)


def canonical_json(value: Any) -> str:
    """Stable JSON text for hashing: sorted keys, no whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def hash_config(config: Any) -> str:
    """sha256 of a config's canonical JSON (a pydantic model is dumped first)."""
    if isinstance(config, BaseModel):
        config = config.model_dump(mode="json")
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def hash_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_repo_root()), *args], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode("utf-8", errors="replace")


@functools.lru_cache(maxsize=1)
def code_version() -> CodeVersion:
    """The code that is running: package version, git commit, dirty flag and a hash of the uncommitted diff."""
    try:
        version = importlib_metadata.version("nano2-recipe")
    except importlib_metadata.PackageNotFoundError:
        version = "0+unknown"
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return CodeVersion(package_version=version)
    status = _git("status", "--porcelain") or ""
    dirty = bool(status.strip())
    diff_hash = None
    if dirty:
        digest = hashlib.sha256((_git("diff", "HEAD", "--binary") or "").encode())
        for line in sorted(status.splitlines()):
            if line.startswith("?? "):
                untracked = _repo_root() / line[3:].strip().strip('"')
                if untracked.is_file():
                    digest.update(line.encode() + hash_file(untracked).encode())
        diff_hash = digest.hexdigest()
    return CodeVersion(package_version=version, commit=commit.strip(), dirty=dirty, diff_hash=diff_hash)


def current_command() -> str:
    """The command line that is running, for `producer.command`."""
    import shlex
    import sys

    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return shlex.join([prog, *sys.argv[1:]])


def list_files(directory: str | Path, hash_files: bool = True) -> list[FileEntry]:
    """Files of an artifact, relative to it; nested artifacts (their own manifest) are not part of it."""
    directory = Path(directory)
    entries = []
    for root, dirs, files in os.walk(directory):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not (root_path / d / MANIFEST_NAME).exists())
        for fname in sorted(files):
            if root_path == directory and fname == MANIFEST_NAME:
                continue
            path = root_path / fname
            entries.append(
                FileEntry(
                    path=path.relative_to(directory).as_posix(),
                    bytes=path.stat().st_size,
                    sha256=hash_file(path) if hash_files else None,
                )
            )
    return entries


def content_hash(path: str | Path) -> str:
    """Hash of a file, or of a directory tree (relative paths and file hashes)."""
    path = Path(path)
    if path.is_file():
        return hash_file(path)
    digest = hashlib.sha256()
    for entry in list_files(path, hash_files=True):
        digest.update(f"{entry.path}\0{entry.sha256}\n".encode())
    return digest.hexdigest()


RUN_DIR_ENV = "NANO2_RUN_DIR"  # set by `nano2 run` for every stage


def run_root_of(path: str | Path) -> Path | None:
    """The recipe run dir a path lies in: `$NANO2_RUN_DIR` when it contains the path, else the nearest ancestor
    holding the runner's state folder (`.recipe`); None outside any run."""
    resolved = Path(path).resolve()
    env = os.environ.get(RUN_DIR_ENV)
    if env and resolved.is_relative_to(Path(env).resolve()):
        return Path(env).resolve()
    for ancestor in (resolved, *resolved.parents):
        if (ancestor / RUN_STATE_DIR).is_dir():
            return ancestor
    return None


def recorded_path(path: str | Path) -> str:
    """How a manifest names a path: relative to its run dir when it lies in one (so a copied or moved run dir
    reads the same), else absolute."""
    resolved = Path(path).resolve()
    root = run_root_of(resolved)
    return resolved.relative_to(root).as_posix() if root is not None else str(resolved)


def resolve_recorded(recorded: str, artifact_dir: str | Path) -> Path:
    """The path a manifest recorded, as it is now: a relative one is read against the run dir the artifact lies
    in (or the artifact's own folder outside any run)."""
    path = Path(recorded)
    if path.is_absolute():
        return path
    root = run_root_of(artifact_dir)
    return (root if root is not None else Path(artifact_dir)) / path


def input_ref(path: str | Path) -> InputRef:
    """How a consumer records an input: by manifest id when the input has one, else by content hash; the path
    relative to the run dir when it lies in one (`recorded_path`)."""
    path = Path(path)
    if not path.exists():
        raise MissingManifestError(f"{path}: input does not exist")
    if path.is_dir() and (path / MANIFEST_NAME).exists():
        return InputRef(path=recorded_path(path), manifest_id=read_manifest(path).id)
    return InputRef(path=recorded_path(path), content_hash=content_hash(path))


def _manifest_id(body: dict[str, Any]) -> str:
    hashed = {k: v for k, v in body.items() if k not in ("id", "created_at")}
    return hashlib.sha256(canonical_json(hashed).encode()).hexdigest()[:20]


def build_manifest(
    *,
    kind: ArtifactKind | str,
    name: str,
    command: str,
    config: Any = None,
    config_path: str | Path | None = None,
    inputs: list[InputRef] | None = None,
    stats: OutputStats | dict[str, Any] | None = None,
    files: list[FileEntry] | None = None,
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """Assemble a manifest; its id is a hash of everything but the timestamp, so equal artifacts share ids."""
    if isinstance(config, BaseModel):
        config = config.model_dump(mode="json")
    body: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": ArtifactKind(kind).value,
        "name": name,
        "producer": Producer(
            command=command,
            config=config,
            config_path=str(config_path) if config_path is not None else None,
            config_hash=hash_config(config) if config is not None else None,
        ).model_dump(mode="json"),
        "code": code_version().model_dump(mode="json"),
        "inputs": [i.model_dump(mode="json") for i in inputs or []],
        "stats": OutputStats.model_validate(stats or {}).model_dump(mode="json"),
        "files": [f.model_dump(mode="json") for f in files or []],
        "extra": extra or {},
    }
    body["id"] = _manifest_id(body)
    body["created_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return Manifest.model_validate(body)


def write_manifest(directory: str | Path, hash_files: bool = True, **fields: Any) -> Manifest:
    """Write `manifest.json` into an artifact directory, listing (and hashing) the files already there."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fields.get("files") is None:
        fields["files"] = list_files(directory, hash_files=hash_files)
    manifest = build_manifest(**fields)
    tmp = directory / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / MANIFEST_NAME)
    return manifest


def read_manifest(directory: str | Path) -> Manifest:
    """Read the manifest of an artifact directory (or a manifest.json path itself)."""
    path = Path(directory)
    if path.name != MANIFEST_NAME:
        path = path / MANIFEST_NAME
    if not path.exists():
        raise MissingManifestError(f"{path.parent}: no {MANIFEST_NAME} (every artifact directory needs one)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"line {exc.lineno}", f"malformed JSON: {exc.msg}") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        from nano2.config import describe_validation_error

        field, message = describe_validation_error(exc, Manifest)[0]
        raise ConfigError(path, field, message) from None


def find_manifest(path: str | Path, stop_at: str | Path | None = None) -> tuple[Path, Manifest] | None:
    """Nearest artifact directory at or above `path` (not above `stop_at`) and its manifest."""
    path = Path(path).resolve()
    stop = Path(stop_at).resolve() if stop_at is not None else None
    for candidate in (path, *path.parents):
        if (candidate / MANIFEST_NAME).exists():
            return candidate, read_manifest(candidate)
        if stop is not None and candidate == stop:
            break
    return None
