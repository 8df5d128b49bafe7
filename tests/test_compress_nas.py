"""The memory-budgeted search: the paper's 9B is feasible at 128k on an A10G, candidates agree with model/size.py,
depth choices come from measurements or the config, and a tiny search ranks depth then widths."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from compress.config import CompressConfig, load_compress_config
from compress.importance import ImportanceScores
from compress.nas import depth_drops, enumerate_candidates, neighbours
from compress.pipeline import run_search
from model.configs import PATTERN_9B, PATTERN_TINY_9B, get_config
from model.size import GPUS, inference_memory, total_params
from nano2.errors import ConfigError
from tests.conftest import REPO

FULL = REPO / "compress" / "configs" / "nano2-12b-to-9b.yaml"
TINY = REPO / "compress" / "configs" / "tiny.yaml"


def test_full_scale_search_lists_the_paper_9b_as_feasible(cli, tmp_path):
    res = cli("compress", "search", FULL, "--no-train", "-o", tmp_path)
    assert res.code == 0, res.err
    assert "reference fits" in res.out
    assert "over the budget: hidden +3, ffn +3, parent" in res.out
    with open(tmp_path / "search" / "candidates.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 6 * 8 * 3
    nine = [r for r in rows if (r["depth"], r["hidden"], r["ffn"], r["mamba_heads"]) == ("56", "4480", "15680", "128")]
    assert len(nine) == 1 and nine[0]["pattern"] == PATTERN_9B
    assert nine[0]["fits"] == "True" and nine[0]["feasible"] == "True"
    assert int(nine[0]["params"]) == total_params(get_config("nano2-9b"))
    manifest = json.loads((tmp_path / "search" / "manifest.json").read_text())
    assert manifest["kind"] == "nas" and manifest["extra"]["depth_ranking"] == "config drop_layers"
    assert (tmp_path / "search" / "candidates.png").exists()


def test_candidates_agree_with_the_memory_calculator():
    cfg = load_compress_config(FULL)
    parent = get_config("nano2-12b")
    drops = depth_drops(parent, cfg.search, None)
    candidates = enumerate_candidates(parent, cfg.search, drops)
    budget = GPUS["a10g"].budget_bytes
    for c in candidates[::37]:
        child = parent.with_(
            pattern="".join(s for i, s in enumerate(parent.pattern) if i not in set(c.drops)),
            hidden_size=c.hidden, intermediate_size=c.ffn, mamba_num_heads=c.mamba_heads,
        )  # fmt: skip
        memory = inference_memory(child, 131072, 1, "bf16").total
        assert c.params == total_params(child) and c.fits == (memory <= budget)
        assert c.memory_gib == pytest.approx(memory / 2**30)
    fits = {c.key: c.fits for c in candidates}
    labels = [label for label, _ in neighbours(cfg.search, cfg.search.reference, fits.get)]
    assert labels[0] == "reference" and "hidden +3" in labels and "hidden +4" not in labels


def test_measured_depth_ranking_wins_over_the_config(tmp_path):
    cfg = load_compress_config(TINY)
    parent = get_config("tiny-12b")
    assert depth_drops(parent, cfg.search, None)[21] == [19, 20, 21, 24]
    assert drop_to(parent, cfg, [19, 20, 21, 24]) == PATTERN_TINY_9B
    scores = ImportanceScores(
        parent.pattern, parent.n_groups, hidden=torch.zeros(1), depth_removal_order=[1, 2, 3, 4, 5, 6]
    )
    assert depth_drops(parent, cfg.search, scores) == {23: [1, 2], 21: [1, 2, 3, 4], 19: [1, 2, 3, 4, 5, 6]}
    missing = cfg.search.model_copy(update={"drop_layers": {}})
    with pytest.raises(ConfigError, match="depth 19 removes 6 layers but there is no depth ranking"):
        depth_drops(parent, missing, None)


def drop_to(parent, cfg, drops):
    return "".join(s for i, s in enumerate(parent.pattern) if i not in set(drops))


def test_bad_search_spaces_are_clear_config_errors(tmp_path):
    data = yaml.safe_load(TINY.read_text())
    data["search"]["mamba_heads"] = [5, 8]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_compress_config(path)
    parent = get_config("tiny-12b")
    with pytest.raises(ConfigError, match=r"search\.mamba_heads: mamba_heads 5 is not a multiple of n_groups 2"):
        enumerate_candidates(parent, cfg.search, depth_drops(parent, cfg.search, None), str(path))
    data["search"]["ffn"] = {"min": 512, "max": 256, "step": 64}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"search\.ffn"):
        load_compress_config(path)
    data["search"]["ffn"] = [256]
    data["search"]["budget"]["gpus"] = "a10g"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"bad\.yaml: search\.budget\.gpus: unknown key"):
        load_compress_config(path)


def test_scored_search_ranks_depth_then_widths(tmp_path):
    """A trained-parent run in miniature: importance, the depth stage and proxy-scored widths; a winner to prune.

    The parent is a 7-block model of the tiny family: the depth ranking costs one forward pass per block."""
    from model.io import build_model, save_checkpoint

    short = get_config("tiny-12b").with_(name="tiny-short", pattern="M-M*-M-")
    parent = save_checkpoint(build_model(short, seed=0), tmp_path / "parent", short)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).integers(0, 4096, size=(8, 32)))
    data = yaml.safe_load(TINY.read_text())
    data.update(parent=str(parent), architecture=None, output_dir=str(tmp_path / "out"))
    data["calibration"] = {"source": str(tmp_path / "calib.npy"), "samples": 4, "seq_len": 32, "batch_size": 4,
                           "depth_samples": 2, "depth_max_remove": 1}  # fmt: skip
    data["search"].update(
        depth=[6, 7], hidden=[112, 128], ffn=[384, 512], mamba_heads=[8], target_params="1.3M",
        params_tolerance=0.5, budget={"gpu": "custom:1", "context": 1024}, reference=None, drop_layers={},
        scoring={"method": "proxy", "samples": 4, "seq_len": 32, "batch_size": 4, "max_width_candidates": 2},
    )  # fmt: skip
    cfg = CompressConfig.model_validate(data)
    result = run_search(cfg, "test.yaml")
    depth_rows = [c for c in result.candidates if c.stage == "depth"]
    assert [c.depth for c in depth_rows] == [6, 7] and all(c.proxy_loss is not None for c in depth_rows)
    assert depth_rows[1].proxy_kl == pytest.approx(0.0, abs=1e-6)  # 7 layers at full width is the parent itself
    assert result.best_depth == min(depth_rows, key=lambda c: c.proxy_loss).depth
    ranked = sorted((c for c in result.candidates if c.rank is not None), key=lambda c: c.rank)
    assert len(ranked) == 2 and all(c.depth == result.best_depth and c.feasible for c in ranked)
    assert ranked[0].proxy_loss <= ranked[1].proxy_loss
    assert (tmp_path / "out" / "importance" / "importance.safetensors").exists()
    winner = yaml.safe_load((tmp_path / "out" / "search" / "winner.yaml").read_text())
    assert (winner["hidden"], winner["ffn"]) == (ranked[0].hidden, ranked[0].ffn)
    manifest = json.loads((tmp_path / "out" / "search" / "manifest.json").read_text())
    assert manifest["extra"]["depth_ranking"] == "measured" and len(manifest["inputs"]) == 2
    # a second search reuses the scores measured on this very parent
    before = (tmp_path / "out" / "importance" / "manifest.json").read_text()
    run_search(cfg, "test.yaml")
    assert (tmp_path / "out" / "importance" / "manifest.json").read_text() == before


def test_scoring_needs_a_checkpoint():
    cfg = load_compress_config(FULL)
    with pytest.raises(ConfigError, match="not a checkpoint directory"):
        run_search(cfg, FULL)
