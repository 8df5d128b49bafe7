"""Data parallelism: two CPU processes on gloo (torchrun) follow the loss curve of one process at the same global
batch, with DDP and with FSDP2 (whose sharded checkpoints and final save go through full state dicts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nano2.manifest import read_manifest
from tests.test_train_support import build_corpus, tokenize_corpus, torch_threads, train_config, train_spec, write_yaml
from train.config import load_train_config
from train.loop import run_training
from train.plot import read_metrics

STEPS = 6
RTOL = 1e-5


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_tokenizer_dir):
    root = tmp_path_factory.mktemp("ddp")
    tokens = tokenize_corpus(build_corpus(root / "corpus"), root / "tokens", tiny_tokenizer_dir)
    spec = write_yaml(root / "spec.yaml", train_spec(seq_len=32, batch=4, steps=STEPS))
    # one process: micro-batches of 2 sequences, 2 accumulation steps; two ranks: 1 sequence, 2 accumulation steps
    single = write_yaml(root / "single.yaml", train_config(spec, tokens, tiny_tokenizer_dir, checkpoint_every=3))
    with torch_threads(1):
        run_training(load_train_config(single), out_dir=root / "single", progress=False)
    return root, spec, tokens, tiny_tokenizer_dir


DRIVER = """
import sys

import torch.distributed as dist

from nano2.app.cli import main

dist.init_process_group("gloo")  # one group for both runs: run_training joins it and leaves it open
for config, out in zip(sys.argv[1::2], sys.argv[2::2]):
    main(["train", "pretrain", config, "-o", out, "--no-progress"])
dist.destroy_process_group()
"""


def torchrun(root: Path, runs: list[tuple[Path, Path]]) -> None:
    """Both strategies in one torchrun launch (through the CLI), paying the start-up of 2 processes once."""
    driver = root / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [str(p) for run in runs for p in run]
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(driver), *args],
        capture_output=True, text=True, env=env, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||a||: Adam turns float noise in near-zero gradients into a few larger elementwise moves, so
    whole tensors are compared, not single elements."""
    return float((a.double() - b.double()).norm() / a.double().norm().clamp(min=1e-30))


def assert_same_run(reference: Path, parallel: Path) -> None:
    ref, par = read_metrics(reference / "metrics.jsonl"), read_metrics(parallel / "metrics.jsonl")
    assert [r["step"] for r in par] == list(range(STEPS))
    assert [r["phase"] for r in par] == [r["phase"] for r in ref]
    assert [r["sequences"] for r in par] == [r["sequences"] for r in ref]  # the same global batches
    assert [r["loss"] for r in par] == pytest.approx([r["loss"] for r in ref], rel=RTOL)
    assert [r["grad_norm"] for r in par] == pytest.approx([r["grad_norm"] for r in ref], rel=1e-4)
    for name in ("model.safetensors", "checkpoints/step-00000003/model.safetensors"):
        a, b = load_file(reference / name), load_file(parallel / name)
        assert a.keys() == b.keys()
        assert max(relative_difference(a[k], b[k]) for k in a) < 1e-4
    state = "checkpoints/step-00000003/train_state/optimizer.safetensors"
    a, b = load_file(reference / state), load_file(parallel / state)
    assert a.keys() == b.keys() and max(relative_difference(a[k], b[k]) for k in a) < 1e-3
    manifest = read_manifest(parallel)
    assert manifest.extra["world_size"] == 2
    assert manifest.extra["realised"] == read_manifest(reference).extra["realised"]


def test_two_ranks_match_one_process_with_ddp_and_fsdp2(setup):
    root, spec, tokens, tokenizer = setup
    runs = []
    for strategy in ("ddp", "fsdp2"):
        cfg = train_config(
            spec, tokens, tokenizer, micro_batch_size=1, checkpoint_every=3, parallel={"strategy": strategy}
        )
        runs.append((write_yaml(root / f"{strategy}.yaml", cfg), root / strategy))
    torchrun(root, runs)
    for _, out in runs:
        assert_same_run(root / "single", out)
