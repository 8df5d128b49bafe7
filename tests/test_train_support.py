"""Small real inputs for the train/ tests: documents from this repository, token shards and specs made from them.

No tests live here; the train test files import these builders (each builds what it needs in its own tmp dir).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def repo_documents(package: str, suffix: str, limit: int) -> list[dict]:
    """Up to `limit` files of one package of this repository, as {"id", "text"} documents (sorted by path)."""
    rows = []
    for path in sorted((REPO / package).rglob(f"*{suffix}")):
        if "__pycache__" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            rows.append({"id": path.relative_to(REPO).as_posix(), "text": text})
        if len(rows) == limit:
            break
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def build_corpus(root: Path) -> Path:
    """A curated-like data root: web documents in two quality levels and a code artifact, all real text."""
    write_jsonl(root / "curated/web/level=high/part-0.jsonl", repo_documents("mixtures", ".py", 6))
    write_jsonl(root / "curated/web/level=medium/part-0.jsonl", repo_documents("nano2", ".py", 6))
    write_jsonl(root / "curated/web/level=medium/part-1.jsonl", repo_documents("curation", ".md", 4))
    import pyarrow as pa
    import pyarrow.parquet as pq

    code = repo_documents("model", ".py", 6)
    (root / "curated/code").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(code), root / "curated/code/part-0.parquet")
    return root


def tokenize_corpus(corpus: Path, out: Path, tokenizer_dir: Path) -> Path:
    from train.tokenize import tokenize_inputs

    tokenize_inputs(
        [corpus / "curated/web", corpus / "curated/code"], out, tokenizer_dir, data_root=corpus, show_progress=False
    )
    return out


def train_spec(seq_len: int = 32, batch: int = 4, steps: int = 20, **overrides) -> dict:
    """Three phases at 60% / 90% over the tokenized corpus (`tokenize_corpus`)."""
    spec = {
        "name": "train-test",
        "seq_len": seq_len,
        "global_batch_size": batch,
        "total_tokens": seq_len * batch * steps,
        "sources": {
            "crawl-high": {"path": "curated/web/level=high", "max_epochs": 4},
            "crawl-medium": {"path": "curated/web/level=medium", "max_epochs": 4},
            "code": {"path": "curated/code", "max_epochs": 4},
        },
        "phases": [
            {"name": "phase1", "until": 0.6, "weights": {"crawl-medium": 0.5, "crawl-high": 0.2, "code": 0.3}},
            {"name": "phase2", "until": 0.9, "weights": {"crawl-medium": 0.2, "crawl-high": 0.5, "code": 0.3}},
            {"name": "phase3", "until": 1.0, "weights": {"crawl-high": 0.75, "code": 0.25}},
        ],
    }
    spec.update(overrides)
    return spec


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def train_config(spec_path: Path, data_root: Path, tokenizer_dir: Path, **overrides) -> dict:
    """A tiny-12b pretraining config over `spec_path`, fast enough for tests."""
    cfg = {
        "name": "test-run",
        "model": {"name": "tiny-12b", "seed": 0},
        "tokenizer": str(tokenizer_dir),
        "data": {"spec": str(spec_path), "data_root": str(data_root), "seed": 11},
        "micro_batch_size": 2,
        "schedule": {"kind": "wsd", "lr": 3.0e-3, "min_lr": 3.0e-4, "warmup_steps": 3, "decay_fraction": 0.2},
        "device": "cpu",
        "plot": False,
    }
    cfg.update(overrides)
    return cfg


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with `n` intra-op threads: on a shared 2-core machine, 2 spinning OpenMP threads per process can make a
    tiny model 10x slower than 1 thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
