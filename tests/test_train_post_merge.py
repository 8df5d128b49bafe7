"""Merge: (1 - alpha) * A + alpha * B; the end points return the inputs bit for bit; mismatches are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import typer
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from model.configs import get_config
from model.io import build_model, load_checkpoint, save_checkpoint
from nano2.errors import Nano2Error
from nano2.manifest import read_manifest
from train.merge import merge_checkpoints
from train.post_cli import register


@pytest.fixture(scope="module")
def pair(tiny_checkpoint_dir, tiny_tokenizer_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A (the seed-0 tiny checkpoint) and B (seed 1, same architecture and tokenizer)."""
    root = tmp_path_factory.mktemp("merge")
    a = Path(shutil.copytree(tiny_checkpoint_dir, root / "reasoning"))
    cfg = get_config("tiny-12b")
    b = save_checkpoint(build_model(cfg, seed=1), root / "chat", cfg, tokenizer_dir=tiny_tokenizer_dir)
    return a, b


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model.safetensors"))


def test_end_points_return_the_inputs_exactly(pair, tmp_path):
    a, b = pair
    for alpha, expected in ((0.0, a), (1.0, b)):
        out = merge_checkpoints(a, b, alpha, tmp_path / f"alpha{alpha}")
        merged, reference = weights(out), weights(expected)
        assert merged.keys() == reference.keys()
        assert all(torch.equal(merged[k], reference[k]) for k in reference)


def test_half_is_the_mean_and_the_result_loads_with_lineage(pair, tmp_path):
    a, b = pair
    out = merge_checkpoints(a, b, 0.5, tmp_path / "merged")
    wa, wb, merged = weights(a), weights(b), weights(out)
    differing = 0
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, (wa[name] + wb[name]) / 2, rtol=0, atol=1e-7)
        differing += not torch.equal(wa[name], wb[name])
    assert differing > len(merged) // 2  # the inputs really differ, so the mean is a new point
    quarter = weights(merge_checkpoints(a, b, 0.25, tmp_path / "quarter"))
    name = next(n for n in merged if not torch.equal(wa[n], wb[n]))
    torch.testing.assert_close(quarter[name], 0.75 * wa[name] + 0.25 * wb[name])

    model = load_checkpoint(out)
    assert sum(p.numel() for p in model.parameters()) == read_manifest(out).extra["parameters"]
    manifest = read_manifest(out)
    assert manifest.kind == "checkpoint" and manifest.name == "merged"
    assert [i.manifest_id for i in manifest.inputs] == [read_manifest(a).id, read_manifest(b).id]
    assert manifest.extra["merge"] == {"method": "linear", "formula": "(1 - alpha) * A + alpha * B", "alpha": 0.5,
                                       "a": str(a), "b": str(b)}  # fmt: skip
    assert (out / "tokenizer.json").read_bytes() == (a / "tokenizer.json").read_bytes()


def test_mismatched_shapes_architectures_and_tokenizers_are_refused(pair, tmp_path, tiny_tokenizer_dir):
    a, b = pair
    bent = Path(shutil.copytree(b, tmp_path / "bent"))
    tensors = weights(bent)
    name = next(n for n in tensors if n.endswith("norm_f.weight"))
    tensors[name] = torch.ones(tensors[name].shape[0] + 1)
    save_file(tensors, str(bent / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(Nano2Error, match=rf"{name} has shape \(128,\) in A and \(129,\) in B"):
        merge_checkpoints(a, bent, 0.5, tmp_path / "out")

    cfg9 = get_config("tiny-9b")
    other = save_checkpoint(build_model(cfg9, seed=0), tmp_path / "nine", cfg9, tokenizer_dir=tiny_tokenizer_dir)
    with pytest.raises(Nano2Error, match=r"different architectures \(pattern: .*hidden_size: 128 vs 112"):
        merge_checkpoints(a, other, 0.5, tmp_path / "out")

    retok = Path(shutil.copytree(b, tmp_path / "retok"))
    vocab = json.loads((retok / "tokenizer.json").read_text())
    vocab["added_tokens"][0]["content"] = "<unknown>"
    (retok / "tokenizer.json").write_text(json.dumps(vocab))
    with pytest.raises(Nano2Error, match=r"tokenizer\.json files differ"):
        merge_checkpoints(a, retok, 0.5, tmp_path / "out")

    with pytest.raises(Nano2Error, match=r"--alpha must be in \[0, 1\]"):
        merge_checkpoints(a, b, 1.5, tmp_path / "out")
    with pytest.raises(Nano2Error, match="must not be one of the inputs"):
        merge_checkpoints(a, b, 0.5, a)
    assert not (tmp_path / "out").exists()


def test_merge_command(pair, tmp_path):
    a, b = pair
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["merge", str(a), str(b), "--alpha", "0.5", "-o", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "ok: merged" in result.output
    assert read_manifest(tmp_path / "m").extra["merge"]["alpha"] == 0.5
