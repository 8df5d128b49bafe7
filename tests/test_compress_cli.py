"""`nano2 compress importance | prune | distill` end to end on the tiny checkpoint (distillation in train/'s loop)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from model.configs import get_config
from model.io import load_checkpoint
from model.size import total_params
from nano2.contracts.megatron import IndexedShardWriter
from nano2.manifest import read_manifest, write_manifest


@pytest.fixture(scope="module")
def token_root(tmp_path_factory):
    """A tokenized data root with one source (shards + `tokens` manifest) and a spec reading it."""
    root = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    writer = IndexedShardWriter(root / "web" / "part-0", np.uint16)
    # a learnable stream: each token is mostly the previous one + 1 (so distillation has something to transfer)
    for _ in range(20):
        start = int(rng.integers(0, 900))
        writer.add_document((start + np.arange(100) + (rng.random(100) < 0.1)) % 1000)
    shard = writer.close()
    write_manifest(root / "web", kind="tokens", name="web", command="test", stats={"tokens": shard.tokens})
    spec = {
        "name": "distill-test",
        "seq_len": 32,
        "global_batch_size": 4,
        "total_tokens": 256,
        "sources": {"web": {"path": "web", "max_epochs": 4}},
        "phases": [{"name": "kd", "until": 1.0, "weights": {"web": 1.0}}],
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_checkpoint_dir, token_root):
    """Importance scores of the tiny checkpoint from the CLI."""
    from nano2.app.cli import main

    out = tmp_path_factory.mktemp("imp") / "importance"
    calib = ["--calib", str(token_root / "web"), "--samples", "2", "--seq-len", "32", "--batch-size", "2"]
    # the depth ranking (25 + 24 + ... forward passes) is tested on a short model in test_compress_importance.py
    main(["compress", "importance", str(tiny_checkpoint_dir), *calib, "--depth-samples", "0", "-o", str(out)])
    return out


def test_importance_cli_writes_scores(scored, tiny_checkpoint_dir):
    manifest = read_manifest(scored)
    assert manifest.kind == "importance" and manifest.stats.tokens == 64
    assert {i.path for i in manifest.inputs} >= {str(tiny_checkpoint_dir)}
    assert manifest.extra["depth_removal_order"] == [] and (scored / "importance.safetensors").exists()


def test_prune_cli_with_key_value_shape(cli, scored, tiny_checkpoint_dir, tmp_path):
    res = cli(
        "compress",
        "prune",
        tiny_checkpoint_dir,
        "--shape",
        "drop_layers=19,20,21,24 hidden=112",
        "--shape",
        "ffn=384",
        "--scores",
        scored,
        "-o",
        tmp_path / "child",
    )
    assert res.code == 0, res.err
    child = load_checkpoint(tmp_path / "child")
    cfg = get_config("tiny-9b")
    assert child.config.hybrid_override_pattern == cfg.pattern
    assert sum(p.numel() for p in child.parameters()) == total_params(cfg)
    assert "71.3% of the parent" in res.out


def test_prune_cli_errors_are_one_line(cli, tiny_checkpoint_dir, scored, tmp_path):
    res = cli("compress", "prune", tiny_checkpoint_dir, "--shape", "ffn=1024", "-o", tmp_path / "x")
    assert res.code == 2 and "error: ffn 1024 is larger than the parent's 512" in res.err
    res = cli(
        "compress", "prune", tiny_checkpoint_dir, "--shape", "mamba_heads=5", "--scores", scored, "-o", tmp_path / "x"
    )
    assert res.code == 2 and "not a multiple of n_groups 2" in res.err
    res = cli("compress", "prune", tiny_checkpoint_dir, "--shape", "hidden=64", "-o", tmp_path / "x")
    assert res.code == 2 and "needs importance scores" in res.err


def distill_config(tmp_path, parent, token_root, student):
    calib = tmp_path / "heldout.npy"
    np.save(calib, ((np.arange(4 * 32).reshape(4, 32) * 7) % 1000).astype(np.int64))
    config = {
        "name": "tiny-distill-test",
        "parent": str(parent),
        "output_dir": str(tmp_path / "out"),
        "calibration": {"source": str(calib)},
        "search": {
            "depth": [21],
            "hidden": [112],
            "ffn": [384],
            "mamba_heads": [8],
            "target_params": "2.74M",
            "scoring": {"samples": 4, "seq_len": 32, "batch_size": 4},
        },
        "distill": {
            "student": str(student),
            "temperature": 2.0,
            "lm_weight": 0.1,
            "train": {
                "data": {"spec": str(token_root / "spec.yaml"), "data_root": str(token_root)},
                "micro_batch_size": 2,
                "schedule": {"kind": "constant", "lr": 1e-3},
                "checkpoint_every": 1,
                "device": "cpu",
                "plot": False,
            },
        },
    }
    path = tmp_path / "compress.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


SHORT = get_config("tiny-12b").with_(name="tiny-short", pattern="M-M*-M-")  # 7 blocks: fast teacher and student


@pytest.fixture(scope="module")
def short_parent(tmp_path_factory, tiny_tokenizer_dir):
    from model.io import build_model, save_checkpoint

    return save_checkpoint(
        build_model(SHORT, seed=0), tmp_path_factory.mktemp("short") / "parent", SHORT, tokenizer_dir=tiny_tokenizer_dir
    )


@pytest.fixture(scope="module")
def child(tmp_path_factory, short_parent):
    from compress.prune import PruneShape, prune_checkpoint

    out, _ = prune_checkpoint(short_parent, PruneShape(drop_layers=[4]), tmp_path_factory.mktemp("child") / "child")
    return out


def test_distill_cli_runs_in_the_training_loop_and_resumes(cli, child, short_parent, token_root, tmp_path):
    config = distill_config(tmp_path, short_parent, token_root, child)
    res = cli("compress", "distill", config, "--stop-at-step", "1", "--no-progress", "--no-eval")
    assert res.code == 0, res.err
    run = tmp_path / "out" / "distill"
    assert not (run / "manifest.json").exists()  # stopped like a pre-empted job: no final checkpoint
    res = cli("compress", "distill", config, "--resume", "--no-progress")
    assert res.code == 0, res.err
    assert "resuming" in res.out and "recovered" in res.out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1] and all("kl" in r and "lm_loss" in r for r in records)
    for r in records:  # the logged loss is the configured blend of the two terms
        assert r["loss"] == pytest.approx(r["kl"] + 0.1 * r["lm_loss"], rel=1e-5)
    manifest = read_manifest(run)
    assert manifest.kind == "checkpoint" and manifest.extra["completed"]
    distilled, pruned = load_checkpoint(run), load_checkpoint(child)
    assert not torch.equal(distilled.lm_head.weight, pruned.lm_head.weight)
    report = json.loads((tmp_path / "out" / "distill-eval.json").read_text())
    assert set(report["evaluation"]) == {"parent", "pruned", "distilled", "recovered"}


def test_distill_needs_a_student(cli, tiny_checkpoint_dir, token_root, tmp_path):
    config = distill_config(tmp_path, tiny_checkpoint_dir, token_root, tmp_path / "none")
    data = yaml.safe_load(config.read_text())
    data["distill"].pop("student")
    config.write_text(yaml.safe_dump(data))
    res = cli("compress", "distill", config)
    assert res.code == 2 and "distill.student: no student" in res.err
    data["distill"]["student"] = str(tmp_path / "none")
    config.write_text(yaml.safe_dump(data))
    res = cli("compress", "distill", config)
    assert res.code == 2 and "checkpoint directory not found" in res.err


@pytest.mark.slow
def test_search_scored_by_short_distillations(short_parent, token_root, tmp_path):
    """`scoring.method: distill`: each depth and the top width get a short run in train/'s loop before ranking."""
    from compress.config import CompressConfig
    from compress.pipeline import run_search

    config = yaml.safe_load(distill_config(tmp_path, short_parent, token_root, tmp_path / "unused").read_text())
    config["distill"].pop("student")
    config["calibration"].update(samples=4, seq_len=32, batch_size=4, depth_samples=2, depth_max_remove=1)
    config["search"].update(
        depth=[6, 7],
        hidden=[112],
        ffn=[512],
        target_params="1.2M",
        params_tolerance=0.5,
        budget={"gpu": "custom:1", "context": 1024},
        scoring={
            "method": "distill",
            "samples": 4,
            "seq_len": 32,
            "batch_size": 4,
            "top_k": 1,
            "depth_distill_tokens": 128,
            "distill_tokens": 256,
        },
    )
    result = run_search(CompressConfig.model_validate(config), "test.yaml")
    scored = [c for c in result.candidates if c.distill_loss is not None]
    assert sorted(c.stage for c in scored) == ["depth", "depth", "width"]
    runs = {p.name for p in (result.out_dir / "distill").iterdir()}
    assert runs == {"d6-h128-f512-m8", "d7-h128-f512-m8", f"d{result.best_depth}-h112-f512-m8"}
    for run in (result.out_dir / "distill").iterdir():
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert records and all("kl" in r for r in records)
    width = next(c for c in scored if c.stage == "width")
    assert width.rank == 1 and width.distill_loss != width.proxy_loss
