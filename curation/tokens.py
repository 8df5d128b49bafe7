"""Which tokenizer counts tokens in curated data (the run's *counting tokenizer*, see nano2.contracts.tokens).

`default` is the real byte-level BPE `tokenizer.json` that ships inside the `anthropic==0.34.2` package, so token
counts work offline on any machine that installed the project; a path to any `tokenizer.json` (e.g. the Nano 2
tokenizer, or ours from `nano2 model tokenizer train`) or a hub id (needs network) can be given instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nano2.contracts.tokens import tokenizer_id
from nano2.errors import Nano2Error


def default_tokenizer_path() -> Path:
    spec = importlib.util.find_spec("anthropic")
    if spec is None or spec.origin is None:
        raise Nano2Error("tokenizer 'default' needs the anthropic package (it ships the tokenizer.json we use)")
    path = Path(spec.origin).parent / "tokenizer.json"
    if not path.exists():
        raise Nano2Error(f"tokenizer 'default': {path} is missing from the installed anthropic package")
    return path


def resolve_tokenizer(name_or_path: str) -> str:
    """A value for datatrove's `tokenizer_name_or_path`: a local file when we have one."""
    if name_or_path == "default":
        return str(default_tokenizer_path())
    path = Path(name_or_path)
    if path.is_dir() and (path / "tokenizer.json").exists():
        return str(path / "tokenizer.json")
    return name_or_path


def counting_tokenizer_id(name_or_path: str) -> str:
    """The `stats.tokenizer` of a curated manifest: `tokenizer_id` of the counting tokenizer's file.

    `default` keeps its name; a hub id with no local file names itself (there is nothing here to hash).
    """
    resolved = Path(resolve_tokenizer(name_or_path))
    if not resolved.is_file():
        return name_or_path
    return tokenizer_id(resolved, name="default" if name_or_path == "default" else None)
