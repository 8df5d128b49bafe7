"""Shared fixtures: the CLI runner, spec writing, and the one locator of ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from nano2.app.cli import main

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "mixtures" / "specs"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $NANO2_SHARED_DATA); skipped with a reason where absent, but never silently in CI.
    Absolute, so a relative $NANO2_SHARED_DATA still holds in tests that write configs elsewhere or change
    directory."""
    path = Path(os.environ.get("NANO2_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {path} in CI (set NANO2_SHARED_DATA)")
        pytest.skip(f"shared data not found at {path}; set NANO2_SHARED_DATA to run real-data tests")
    return path


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def cli(capsys):
    """Run `nano2 ARGS...` in-process through the real entry point (exit codes and one-line errors included)."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec dict (or raw text) to a YAML file and return its path."""

    def write(spec: dict | str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        return path

    return write


def small_spec(**overrides) -> dict:
    spec = {
        "name": "small",
        "seq_len": 128,
        "global_batch_size": 4,
        "total_tokens": "1M",
        "sources": {
            "web": {"tokens": "800K", "max_epochs": 2},
            "code": {"tokens": "300K", "max_epochs": 3},
            "math": {"tokens": "100K", "max_epochs": 4},
        },
        "phases": [
            {"name": "p1", "until": 0.6, "weights": {"web": 0.6, "code": 0.3, "math": 0.1}},
            {"name": "p2", "until": 1.0, "weights": {"web": 0.4, "code": 0.4, "math": 0.2}},
        ],
    }
    spec.update(overrides)
    return spec


def _repository_texts() -> list[str]:
    """Real text available on every machine (our own sources and docs) to train a small tokenizer on."""
    texts = []
    for pattern in ("**/*.py", "**/*.md", "**/*.yaml"):
        for path in sorted(REPO.glob(pattern)):
            if ".venv" in path.parts or "runs" in path.parts:
                continue
            texts.extend(p for p in path.read_text(errors="replace").split("\n\n") if p.strip())
    return texts


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer (vocab 1024) with the Nano 2 special tokens and chat template."""
    from model.tokenizer import save_tokenizer, train_bpe

    return save_tokenizer(train_bpe(_repository_texts(), vocab_size=1024), tmp_path_factory.mktemp("tiny-tok"))


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A freshly initialised tiny-12b checkpoint (safetensors + manifest + tokenizer files); treat it as read-only."""
    from model.configs import get_config
    from model.io import build_model, save_checkpoint

    cfg = get_config("tiny-12b")
    out = tmp_path_factory.mktemp("tiny-ckpt")
    return save_checkpoint(build_model(cfg, seed=0), out, cfg, tokenizer_dir=tiny_tokenizer_dir)


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, torch's spinning worker threads make a tiny model 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def checkpoint(tiny_checkpoint_dir, tmp_path) -> Path:
    """A writable copy of the tiny checkpoint."""
    import shutil

    return Path(shutil.copytree(tiny_checkpoint_dir, tmp_path / "start"))
