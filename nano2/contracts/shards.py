"""Where files of an artifact go: one shard naming, partitions, and drop decisions beside (never inside) data.

Shards: `<artifact>/[subset=<value>/]<rank:05d>.parquet`, written by any stage (datatrove's writers get
`SHARD_TEMPLATE`, our own writers `shard_name(rank)`), so every document folder looks the same to a reader.

Decisions (one row per dropped document, `DECISIONS_SCHEMA`) never live inside a document folder, so a glob over
documents never meets a file of another schema: an artifact inside a run's `data` folder (a run dir is marked by
the recipe runner's `.recipe/` state folder) keeps its decisions at the same relative path below the run's
`decisions` folder (`RUN/data/curated/web` -> `RUN/decisions/curated/web`), an artifact in the run's chat root below
`decisions/chat` (`RUN/chat/synthetic/reasoning` -> `RUN/decisions/chat/synthetic/reasoning`), so every drop of a
run is under `RUN/decisions`; an artifact anywhere else keeps them in the sibling folder `<name>.decisions`. The
marker keeps a user's own `/data/...` mount from being rewritten.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from nano2.contracts.documents import SUBSET_KEY

DATA_DIR, DECISIONS_DIR = "data", "decisions"
RUN_STATE_DIR = ".recipe"
"""The recipe runner's state folder: its presence marks a run dir."""
CHAT_DIR = "chat"
"""A run's chat root: `RUN/chat` (chat and preference rows) beside `RUN/data` (documents only) and `RUN/decisions`."""
DECISIONS_SUFFIX = ".decisions"
SHARD_SUFFIX = ".parquet"
SHARD_TEMPLATE = "${rank}.parquet"
"""datatrove's `output_filename` for the same names as `shard_name` (datatrove pads `${rank}` to 5 digits)."""
SUBSET_SHARD_TEMPLATE = f"{SUBSET_KEY}=${{{SUBSET_KEY}}}/{SHARD_TEMPLATE}"
"""datatrove's `output_filename` for a partitioned folder (the document's `subset` metadata names the partition)."""

DECISIONS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("url", pa.string()),
        ("step", pa.string()),
        ("kept", pa.bool_()),
        ("reason", pa.string()),
        ("scores", pa.string()),
    ]
)


def shard_name(rank: int) -> str:
    """The file name of a writer's shard: `00000.parquet` for rank 0."""
    return f"{rank:05d}{SHARD_SUFFIX}"


def subset_dir(artifact_dir: str | Path, value: str) -> Path:
    """The partition folder of one subset of a document artifact."""
    return Path(artifact_dir) / f"{SUBSET_KEY}={value}"


def run_data_folder(path: str | Path) -> Path | None:
    """The `data` folder of the recipe run that `path` lies in, or None (a run dir holds `RUN_STATE_DIR`)."""
    return _run_folder(path, DATA_DIR)


def _run_folder(path: str | Path, name: str) -> Path | None:
    """The folder called `name` directly inside the recipe run dir that `path` lies in, or None."""
    for ancestor in Path(path).absolute().parents:
        if ancestor.name == name and (ancestor.parent / RUN_STATE_DIR).is_dir():
            return ancestor
    return None


def decisions_dir(artifact_dir: str | Path) -> Path:
    """Where the drop decisions of the artifact written at `artifact_dir` go (see the module docstring)."""
    path = Path(artifact_dir).absolute()
    data = run_data_folder(path)
    if data is not None:
        return data.parent / DECISIONS_DIR / path.relative_to(data)
    chat = _run_folder(path, CHAT_DIR)
    if chat is not None:
        return chat.parent / DECISIONS_DIR / CHAT_DIR / path.relative_to(chat)
    return path.with_name(path.name + DECISIONS_SUFFIX)


def step_decisions_dir(artifact_dir: str | Path, step: str) -> Path:
    """The decisions folder of one step (`<decisions>/<step>/<shard>`)."""
    return decisions_dir(artifact_dir) / step
