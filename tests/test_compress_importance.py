"""Importance estimation: width scores against independent recomputations, group ranking, depth ranking by logit
MSE, saved scores, and calibration sets from token files, shards and mixture specs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compress.calibration import load_calibration
from compress.importance import (
    ImportanceSettings,
    compute_importance,
    group_ranking,
    layers_removed,
    load_scores,
    rank_depth,
    save_scores,
    width_scores,
)
from compress.prune import PruneShape, prune_model
from model.configs import ATTENTION, MAMBA, MLP, get_config
from model.io import build_model, quiet_transformers
from nano2.contracts.megatron import IndexedShardWriter
from nano2.errors import Nano2Error

CFG = get_config("tiny-12b")
# depth ranking costs (layers + layers - 1 + ...) forward passes: its tests use a 7-block model of the same family
SHORT = CFG.with_(name="tiny-short", pattern="M-M*-M-")
TOKENS = torch.randint(0, 4096, (6, 32), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def model():
    quiet_transformers()
    return build_model(CFG, seed=0)


def minitron(activations: list[torch.Tensor]) -> torch.Tensor:
    """sqrt(sum over samples of (mean over positions of |a|)^2), written out sample by sample."""
    per_sample = []
    for batch in activations:
        for sample in batch:
            per_sample.append(sample.abs().mean(dim=0))
    return torch.stack(per_sample).pow(2).sum(dim=0).sqrt()


def capture_block_inputs(model, ids_batches):
    """Residual-stream input of every block and of the final norm, captured on the block modules themselves."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for i, layer in enumerate(model.model.layers):
        handles.append(layer.register_forward_pre_hook(lambda m, a, i=i: seen.setdefault(i, []).append(a[0])))
    handles.append(model.model.norm_f.register_forward_pre_hook(lambda m, a: seen.setdefault("f", []).append(a[0])))
    with torch.no_grad():
        for ids in ids_batches:
            model(input_ids=ids)
    for h in handles:
        h.remove()
    return seen


def test_width_scores_match_an_independent_recomputation(model):
    scores = width_scores(model, CFG, TOKENS, batch_size=4)
    inputs = capture_block_inputs(model, [TOKENS[:4], TOKENS[4:]])
    layers = model.model.layers
    with torch.no_grad():
        per_norm = [minitron([layers[i].norm(x) for x in inputs[i]]) for i in range(CFG.num_layers)]
        hidden = torch.stack([*per_norm, minitron([model.model.norm_f(x) for x in inputs["f"]])]).sum(dim=0)
        torch.testing.assert_close(scores.hidden, hidden, rtol=1e-4, atol=1e-6)
        mlp = CFG.pattern.index(MLP)
        up = layers[mlp].mixer.up_proj
        ffn = minitron([F.relu(up(layers[mlp].norm(x))).pow(2) for x in inputs[mlp]])
        torch.testing.assert_close(scores.ffn[mlp], ffn, rtol=1e-4, atol=1e-7)
        attn = CFG.pattern.index(ATTENTION)
    # Mamba and attention heads: the per-channel scores of what the output projection reads, L2 within a head
    gated: list[torch.Tensor] = []
    attn_in: list[torch.Tensor] = []
    h1 = layers[0].mixer.norm.register_forward_hook(lambda m, a, out: gated.append(out))
    h2 = layers[attn].mixer.o_proj.register_forward_hook(lambda m, a, out: attn_in.append(a[0]))
    with torch.no_grad():
        for ids in (TOKENS[:4], TOKENS[4:]):
            model(input_ids=ids)
    h1.remove()
    h2.remove()
    heads = minitron(gated).reshape(CFG.mamba_num_heads, CFG.mamba_head_dim).norm(dim=1)
    torch.testing.assert_close(scores.mamba_heads[0], heads, rtol=1e-4, atol=1e-7)
    a_heads = minitron(attn_in).reshape(CFG.num_attention_heads, CFG.head_dim).norm(dim=1)
    torch.testing.assert_close(scores.attention_heads[attn], a_heads, rtol=1e-4, atol=1e-7)
    assert set(scores.ffn) == {i for i, c in enumerate(CFG.pattern) if c == MLP}
    assert set(scores.mamba_heads) == {i for i, c in enumerate(CFG.pattern) if c == MAMBA}


def test_group_ranking_ranks_within_groups():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.7, 3.0, 2.0, 1.0, 4.0])
    assert group_ranking(scores, 2).tolist() == [[1, 3, 2, 0], [7, 4, 5, 6]]
    with pytest.raises(Nano2Error, match="cannot be split"):
        group_ranking(scores, 3)


def test_depth_ranking_removes_an_identity_layer_first_and_matches_rebuilt_children():
    model = build_model(SHORT, seed=5)
    with torch.no_grad():
        model.model.layers[4].mixer.down_proj.weight.zero_()  # block 4 (MLP) is now the identity
    ids = TOKENS[:4]
    single, order, mse = rank_depth(model, ids, batch_size=2, max_remove=2)
    assert order[0] == 4 and mse[0] == pytest.approx(0.0, abs=1e-12)
    assert len(order) == 2 and order[1] != 4 and mse[1] > 0
    assert single.shape == (SHORT.num_layers,) and int(torch.argmin(single)) == 4
    with torch.no_grad():
        reference = model(input_ids=ids).logits
        for layer in (0, 3, 6):  # the MSE of a child rebuilt by pruning, computed here independently
            child, _, _ = prune_model(model, SHORT, PruneShape(drop_layers=[layer]))
            expected = (child(input_ids=ids, use_cache=False).logits - reference).pow(2).mean().item()
            assert single[layer].item() == pytest.approx(expected, rel=1e-4)
        with layers_removed(model, [0, 1]):
            assert len(model.model.layers) == SHORT.num_layers - 2
    assert len(model.model.layers) == SHORT.num_layers


def test_scores_round_trip_through_safetensors_and_manifest(tmp_path):
    settings = ImportanceSettings(samples=6, seq_len=32, batch_size=6, depth_samples=2, depth_max_remove=1)
    scores = compute_importance(build_model(SHORT, seed=0), SHORT, TOKENS, settings)
    out = save_scores(scores, tmp_path / "imp", SHORT, settings, [], tokens=TOKENS.numel())
    assert (out / "importance.safetensors").exists() and (out / "depth_importance.png").exists()
    loaded = load_scores(out)
    assert loaded.pattern == SHORT.pattern and loaded.depth_removal_order == scores.depth_removal_order
    assert torch.equal(loaded.hidden, scores.hidden)
    assert all(torch.equal(loaded.ffn[k], v) for k, v in scores.ffn.items())
    assert all(torch.equal(loaded.mamba_heads[k], v) for k, v in scores.mamba_heads.items())
    assert all(torch.equal(loaded.attention_heads[k], v) for k, v in scores.attention_heads.items())
    from nano2.manifest import read_manifest, write_manifest

    manifest = read_manifest(out)
    assert manifest.kind == "importance" and manifest.stats.tokens == TOKENS.numel()
    write_manifest(tmp_path / "other", kind="checkpoint", name="x", command="test")
    with pytest.raises(Nano2Error, match="expected 'importance'"):
        load_scores(tmp_path / "other")


def write_shard(prefix, documents):
    writer = IndexedShardWriter(prefix, np.uint16)
    for doc in documents:
        writer.add_document(doc)
    writer.close()


def test_calibration_windows_come_from_the_shards(tmp_path):
    stream = np.arange(1000) % 4000
    write_shard(tmp_path / "shards" / "a", [stream[:600], stream[600:]])
    tokens = load_calibration(tmp_path / "shards", samples=5, seq_len=50, seed=3)
    assert tokens.shape == (5, 50) and tokens.dtype == torch.int64
    for row in tokens:  # every window is a contiguous piece of the token stream
        start = int(row[0])
        assert torch.equal(row, torch.arange(start, start + 50))
    assert torch.equal(tokens, load_calibration(tmp_path / "shards", samples=5, seq_len=50, seed=3))
    assert not torch.equal(tokens, load_calibration(tmp_path / "shards", samples=5, seq_len=50, seed=4))
    with pytest.raises(Nano2Error, match="no shard holds 2000 tokens"):
        load_calibration(tmp_path / "shards", samples=1, seq_len=2000)
    with pytest.raises(Nano2Error, match="outside the model's vocabulary"):
        load_calibration(tmp_path / "shards", samples=2, seq_len=50, vocab_size=10)


def test_calibration_from_token_files_and_errors(tmp_path):
    from safetensors.torch import save_file

    ids = torch.randint(0, 100, (4, 16))
    np.save(tmp_path / "ids.npy", ids.numpy())
    save_file({"input_ids": ids}, str(tmp_path / "ids.safetensors"))
    assert torch.equal(load_calibration(tmp_path / "ids.npy", samples=3, seq_len=10), ids[:3, :10])
    assert torch.equal(load_calibration(tmp_path / "ids.safetensors", samples=4, seq_len=16), ids)
    assert torch.equal(load_calibration(ids, samples=2, seq_len=8), ids[:2, :8])
    with pytest.raises(Nano2Error, match="fewer than the 5 x 16"):
        load_calibration(ids, samples=5, seq_len=16)
    with pytest.raises(Nano2Error, match="not found"):
        load_calibration(tmp_path / "missing.npy", samples=1, seq_len=4)
    np.save(tmp_path / "flat.npy", np.arange(10))
    with pytest.raises(Nano2Error, match="2-D integer tensor"):
        load_calibration(tmp_path / "flat.npy", samples=1, seq_len=4)


def test_calibration_from_a_mixture_spec(tmp_path, write_spec):
    from nano2.manifest import write_manifest

    root = tmp_path / "root"
    for name, base, tokens in (("web", 0, 2000), ("code", 3000, 1000)):
        write_shard(root / name / "part", [np.arange(base, base + tokens) % 4000])
        write_manifest(root / name, kind="tokens", name=name, command="test", stats={"tokens": tokens})
    spec = write_spec({
        "name": "calib", "seq_len": 100, "global_batch_size": 2, "total_tokens": 2000,
        "sources": {"web": {"path": "web"}, "code": {"path": "code"}},
        "phases": [{"name": "p", "until": 1.0, "weights": {"web": 0.75, "code": 0.25}}],
    })  # fmt: skip
    tokens = load_calibration(spec, samples=8, seq_len=40, data_root=root)
    from_code = sum(int(row[0]) >= 3000 for row in tokens)
    assert tokens.shape == (8, 40) and from_code == 2  # 25% of the plan's tokens come from code
    declared = write_spec({
        "name": "declared", "seq_len": 100, "global_batch_size": 2, "total_tokens": 2000,
        "sources": {"web": {"tokens": 3000}},
        "phases": [{"name": "p", "until": 1.0, "weights": {"web": 1.0}}],
    }, name="declared.yaml")  # fmt: skip
    with pytest.raises(Nano2Error, match="declare their tokens"):
        load_calibration(declared, samples=2, seq_len=10, data_root=root)
