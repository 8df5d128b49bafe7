"""Which tokenizer a token count is measured in: every count in a manifest or a document names its tokenizer.

A run has two token counts, and they are never summed together:
- the *counting tokenizer* measures documents as curation and synthesis write them (`token_count` in the document
  contract, `stats.tokens` of their manifests). It must exist before the run's own tokenizer is trained (the
  tokenizer is trained on curated documents), so it is a fixed, shipped BPE (`default`) or the one a config names;
- the *training tokenizer* (the run's `tokenizer/`, or Nano 2's at full scale) measures token shards, and only those
  counts drive mixture maths (`mixtures` reads `tokens` manifests only).
Each manifest's `stats.tokenizer` holds `tokenizer_id(...)` of the one it used, so `nano2 audit` shows which count
is which, and a comparison across tokenizers is visible instead of silent. At full scale a recipe can name the
training tokenizer as the counting one, and then every count in the run is in one tokenizer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def tokenizer_id(tokenizer_json: str | Path, name: str | None = None) -> str:
    """`<name>@<first 12 hex of sha256(tokenizer.json)>`: equal ids mean byte-identical tokenizers."""
    path = Path(tokenizer_json)
    if path.is_dir():
        path = path / "tokenizer.json"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{name or path.parent.name}@{digest}"
