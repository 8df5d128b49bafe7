"""Checkpoints: build -> save -> load gives identical logits; loading refuses pickle and foreign checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from model.configs import get_config
from model.io import build_model, load_checkpoint, save_checkpoint
from nano2.errors import Nano2Error
from nano2.manifest import read_manifest


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "tiny-12b"
    cfg = get_config("tiny-12b")
    model = build_model(cfg, seed=3)
    save_checkpoint(model, out, cfg)
    return out, model


def test_round_trip_identical_logits(tiny_checkpoint):
    path, model = tiny_checkpoint
    loaded = load_checkpoint(path)
    ids = torch.randint(0, 4096, (2, 33), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    manifest = read_manifest(path)
    assert manifest.kind == "checkpoint" and manifest.extra["parameters"] == sum(p.numel() for p in model.parameters())
    assert {f.path for f in manifest.files} >= {"config.json", "model.safetensors"}


def test_auto_model_loads_without_remote_code(tiny_checkpoint):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint[0], trust_remote_code=False)
    assert type(model).__name__ == "NemotronHForCausalLM"
    assert model.config.hybrid_override_pattern == get_config("tiny-12b").pattern


def test_initialisation_scheme():
    cfg = get_config("tiny-12b")
    model = build_model(cfg, seed=0)
    a = torch.exp(model.model.layers[0].mixer.A_log)
    assert torch.all((a >= 1) & (a <= 16))
    assert torch.all(model.model.layers[0].mixer.D == 1)
    dt = torch.nn.functional.softplus(model.model.layers[0].mixer.dt_bias)
    assert torch.all(dt >= 1e-4 - 1e-9) and torch.all(dt <= 0.1 + 1e-6)
    std_in = model.model.layers[1].mixer.up_proj.weight.std().item()
    std_out = model.model.layers[1].mixer.down_proj.weight.std().item()
    assert abs(std_in - 0.02) < 0.002
    assert abs(std_out - 0.02 / (2 * cfg.num_layers) ** 0.5) < 0.0005
    # deterministic in the seed
    assert torch.equal(build_model(cfg, seed=0).lm_head.weight, model.lm_head.weight)
    assert not torch.equal(build_model(cfg, seed=1).lm_head.weight, model.lm_head.weight)


def test_bf16_build():
    model = build_model(get_config("tiny-9b"), seed=0, dtype="bf16")
    assert next(model.parameters()).dtype == torch.bfloat16


def test_refuses_pickle(tiny_checkpoint, tmp_path):
    import shutil

    path = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint[0], path)
    torch.save({"x": torch.zeros(1)}, path / "pytorch_model.bin")
    with pytest.raises(Nano2Error, match="refusing to load pickle"):
        load_checkpoint(path)


def test_refuses_foreign_or_incomplete(tiny_checkpoint, tmp_path):
    import shutil

    with pytest.raises(Nano2Error, match="not found"):
        load_checkpoint(tmp_path / "nope")
    path = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint[0], path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(Nano2Error, match="expected 'nemotron_h'"):
        load_checkpoint(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(Nano2Error, match=r"no \.safetensors"):
        load_checkpoint(path)


def test_cli_init(cli, tmp_path):
    out = tmp_path / "init"
    result = cli("model", "init", "tiny-9b", "-o", out, "--seed", "7")
    assert result.code == 0, result.err
    assert load_checkpoint(out).config.hybrid_override_pattern == get_config("tiny-9b").pattern
    bad = cli("model", "init", "tiny-10b", "-o", tmp_path / "x")
    assert bad.code == 2 and "unknown model config" in bad.err
