"""Pruning surgery on tiny-12b: identity at the same shape, exactness for units that carry nothing, balanced Mamba
groups, loadable children whose size matches model/size.py, and clear errors for impossible shapes."""

from __future__ import annotations

import pytest
import torch

from compress.importance import ImportanceScores
from compress.prune import (
    PruneSelection,
    PruneShape,
    ShapeError,
    balanced_heads,
    build_child,
    load_shape,
    parse_shape_flags,
    prune_checkpoint,
    prune_model,
    prune_state_dict,
    select_units,
)
from model.configs import MAMBA, MLP, PATTERN_TINY_9B, TINY_9B_DROPPED, get_config
from model.io import build_model, load_checkpoint, quiet_transformers
from model.size import param_breakdown, total_params

# eps far below the activations' mean square: RMSNorm's epsilon is the only thing that keeps a norm rescaled for a
# narrower width from being exact, so this makes "exact" mean float rounding.
EXACT_CFG = get_config("tiny-12b").with_(layer_norm_epsilon=1e-12)
IDS = torch.randint(0, 4096, (2, 48), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def parent():
    quiet_transformers()
    return build_model(EXACT_CFG, seed=0)


def logits(model, ids=IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


def random_scores(cfg, seed=0) -> ImportanceScores:
    g = torch.Generator().manual_seed(seed)
    return ImportanceScores(
        pattern=cfg.pattern,
        n_groups=cfg.n_groups,
        hidden=torch.rand(cfg.hidden_size, generator=g),
        ffn={i: torch.rand(cfg.intermediate_size, generator=g) for i, c in enumerate(cfg.pattern) if c == MLP},
        mamba_heads={i: torch.rand(cfg.mamba_num_heads, generator=g) for i, c in enumerate(cfg.pattern) if c == MAMBA},
        depth_removal_order=[24, 3, 10, 17, 5],
        depth_removal_mse=[0.1, 0.2, 0.3, 0.4, 0.5],
    )


def full_selection(cfg) -> PruneSelection:
    return PruneSelection(
        keep_layers=list(range(cfg.num_layers)),
        hidden=torch.arange(cfg.hidden_size),
        ffn={i: torch.arange(cfg.intermediate_size) for i, c in enumerate(cfg.pattern) if c == MLP},
        mamba_heads={i: torch.arange(cfg.mamba_num_heads) for i, c in enumerate(cfg.pattern) if c == MAMBA},
    )


def child_logits(model, cfg, child_cfg, selection, rescale_norms=True) -> torch.Tensor:
    state = model.state_dict()
    child = build_child(child_cfg, prune_state_dict(state.__getitem__, list(state), cfg, child_cfg, selection,
                                                    rescale_norms))  # fmt: skip
    return logits(child)


def test_same_shape_reproduces_logits_exactly(parent):
    reference = logits(parent)
    child, child_cfg, _ = prune_model(parent, EXACT_CFG, PruneShape())
    assert torch.equal(logits(child), reference)
    # with scores and every width at the parent's value the result is the same: nothing is reordered
    shape = PruneShape(hidden=128, ffn=512, mamba_heads=8, depth=25)
    child, child_cfg, _ = prune_model(parent, EXACT_CFG, shape, random_scores(EXACT_CFG))
    assert torch.equal(logits(child), reference)
    assert child_cfg.pattern == EXACT_CFG.pattern


def test_zeroed_ffn_neurons_prune_exactly():
    cfg = EXACT_CFG
    model = build_model(cfg, seed=1)
    dead = [5, 77, 300]
    with torch.no_grad():
        for i, c in enumerate(cfg.pattern):
            if c == MLP:
                model.model.layers[i].mixer.up_proj.weight[dead] = 0.0  # relu(0)^2 = 0: the neuron is silent
    reference = logits(model)
    keep = torch.tensor([j for j in range(cfg.intermediate_size) if j not in dead])
    selection = full_selection(cfg)
    selection.ffn = dict.fromkeys(selection.ffn, keep)
    out = child_logits(model, cfg, cfg.with_(intermediate_size=len(keep)), selection)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-5)


def test_zeroed_mamba_heads_prune_exactly_only_with_norm_rescaling():
    cfg = EXACT_CFG
    model = build_model(cfg, seed=2)
    hd, dead = cfg.mamba_head_dim, [1, 6]  # one head in each of the two groups (heads 0-3 and 4-7)
    with torch.no_grad():
        for i, c in enumerate(cfg.pattern):
            if c == MAMBA:
                conv = model.model.layers[i].mixer.conv1d
                for h in dead:  # x = silu(conv(.) + 0) = 0 for the head: its state, D-skip and output stay 0
                    conv.weight[h * hd : (h + 1) * hd] = 0.0
                    conv.bias[h * hd : (h + 1) * hd] = 0.0
    reference = logits(model)
    selection = full_selection(cfg)
    selection.mamba_heads = dict.fromkeys(selection.mamba_heads, torch.tensor([0, 2, 3, 4, 5, 7]))
    child_cfg = cfg.with_(mamba_num_heads=6)
    torch.testing.assert_close(child_logits(model, cfg, child_cfg, selection), reference, rtol=0, atol=1e-5)
    # the gated norm averages over a group's width: without rescaling the narrower group changes the output
    unscaled = child_logits(model, cfg, child_cfg, selection, rescale_norms=False)
    assert (unscaled - reference).abs().max() > 1e-3


def test_zeroed_hidden_channel_prunes_exactly():
    cfg = EXACT_CFG
    model = build_model(cfg, seed=3)
    channel = 7
    with torch.no_grad():  # nothing ever writes into channel 7 of the residual stream
        model.model.embeddings.weight[:, channel] = 0.0
        for i, c in enumerate(cfg.pattern):
            mixer = model.model.layers[i].mixer
            writer = {"M": "out_proj", "*": "o_proj", "-": "down_proj"}[c]
            getattr(mixer, writer).weight[channel] = 0.0
    reference = logits(model)
    selection = full_selection(cfg)
    selection.hidden = torch.tensor([j for j in range(cfg.hidden_size) if j != channel])
    child_cfg = cfg.with_(hidden_size=cfg.hidden_size - 1)
    torch.testing.assert_close(child_logits(model, cfg, child_cfg, selection), reference, rtol=0, atol=1e-5)


def test_removing_an_identity_layer_is_exact_and_updates_the_pattern():
    cfg = EXACT_CFG
    model = build_model(cfg, seed=4)
    assert cfg.pattern[5:8] == "*-M"
    with torch.no_grad():  # blocks 5 (attention), 6 (MLP) and 7 (Mamba) add zero to the residual: identities
        model.model.layers[5].mixer.o_proj.weight.zero_()
        model.model.layers[6].mixer.down_proj.weight.zero_()
        model.model.layers[7].mixer.out_proj.weight.zero_()
    reference = logits(model)
    child, child_cfg, _ = prune_model(model, cfg, PruneShape(drop_layers=[5, 6, 7]))
    assert child_cfg.pattern == cfg.pattern[:5] + cfg.pattern[8:]
    assert child.config.hybrid_override_pattern == child_cfg.pattern
    assert child_cfg.counts()["attention"] == cfg.counts()["attention"] - 1
    torch.testing.assert_close(logits(child), reference, rtol=0, atol=1e-6)


def test_group_aware_head_pruning_keeps_groups_balanced(parent):
    cfg = EXACT_CFG
    # group 0 (heads 0-3) scores far above group 1: a global top-4 would take all of group 0
    scores = torch.tensor([9.0, 8.0, 7.0, 6.0, 0.4, 0.1, 0.3, 0.2])
    kept = balanced_heads(scores, n_groups=2, keep=4)
    assert kept.tolist() == [0, 1, 4, 6]
    heads = random_scores(cfg)
    heads.mamba_heads = dict.fromkeys(heads.mamba_heads, scores)
    child, child_cfg, selection = prune_model(parent, cfg, PruneShape(mamba_heads=4), heads)
    per_group = cfg.mamba_num_heads // cfg.n_groups
    for kept_heads in selection.mamba_heads.values():
        assert [(kept_heads // per_group == g).sum().item() for g in range(cfg.n_groups)] == [2, 2]
    # B and C are group tensors: they are carried over whole
    d_in, gn = cfg.mamba_d_inner, cfg.n_groups * cfg.ssm_state_size
    child_in = child.model.layers[0].mixer.in_proj.weight
    parent_in = parent.model.layers[0].mixer.in_proj.weight
    assert torch.equal(child_in[2 * child_cfg.mamba_d_inner : 2 * child_cfg.mamba_d_inner + 2 * gn],
                       parent_in[2 * d_in : 2 * d_in + 2 * gn])  # fmt: skip
    # dt rows, A_log and D follow the kept heads
    assert torch.equal(child.model.layers[0].mixer.A_log, parent.model.layers[0].mixer.A_log[[0, 1, 4, 6]])
    assert torch.equal(child_in[-4:], parent_in[-8:][[0, 1, 4, 6]])


def test_tiny_12b_to_tiny_9b_shape_matches_the_named_config(parent):
    shape = PruneShape(drop_layers=TINY_9B_DROPPED, hidden=112, ffn=384, mamba_heads=8, name="tiny-9b")
    child, child_cfg, _ = prune_model(parent, EXACT_CFG, shape, random_scores(EXACT_CFG))
    named = get_config("tiny-9b")
    assert child_cfg.pattern == PATTERN_TINY_9B == named.pattern
    assert total_params(child_cfg) == total_params(named)
    assert sum(p.numel() for p in child.parameters()) == sum(param_breakdown(child_cfg).values())
    assert torch.isfinite(logits(child)).all()


def test_depth_from_the_importance_removal_order(parent):
    child, child_cfg, selection = prune_model(parent, EXACT_CFG, PruneShape(depth=22), random_scores(EXACT_CFG))
    assert selection.keep_layers == [i for i in range(25) if i not in (24, 3, 10)]
    assert child_cfg.num_layers == 22 and len(child.model.layers) == 22


def test_pruned_checkpoint_loads_with_auto_model(tmp_path, tiny_checkpoint_dir):
    from transformers import AutoModelForCausalLM

    from compress.importance import ImportanceSettings, save_scores
    from nano2.manifest import read_manifest

    cfg = get_config("tiny-12b")
    scores_dir = save_scores(random_scores(cfg), tmp_path / "scores", cfg, ImportanceSettings(samples=1), [], 0)
    shape = PruneShape(drop_layers=TINY_9B_DROPPED, hidden=112, ffn=384, mamba_heads=6)
    out, child_cfg = prune_checkpoint(tiny_checkpoint_dir, shape, tmp_path / "child", scores_dir)
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=False)
    assert type(model).__name__ == "NemotronHForCausalLM"
    assert model.config.hybrid_override_pattern == PATTERN_TINY_9B
    assert sum(p.numel() for p in model.parameters()) == sum(param_breakdown(child_cfg).values())
    # the saved child is the in-memory pruning of the same parent
    in_memory, _, _ = prune_model(load_checkpoint(tiny_checkpoint_dir), cfg, shape, random_scores(cfg))
    torch.testing.assert_close(logits(model.eval()), logits(in_memory), rtol=0, atol=0)
    manifest = read_manifest(out)
    assert manifest.kind == "checkpoint" and manifest.extra["shape"]["mamba_heads"] == 6
    assert len(manifest.inputs) == 2 and (out / "tokenizer.json").exists()


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (PruneShape(ffn=600), "ffn 600 is larger than the parent's 512"),
        (PruneShape(hidden=256), "hidden 256 is larger than the parent's 128"),
        (PruneShape(mamba_heads=7), "not a multiple of n_groups 2"),
        (PruneShape(mamba_heads=12), "mamba_heads 12 is larger than the parent's 8"),
        (PruneShape(depth=30), "depth 30 is larger than the parent's 25 layers"),
        (PruneShape(drop_layers=[3, 40]), "layer 40 is outside the parent's 0..24"),
        (PruneShape(depth=20, drop_layers=[1, 2]), "depth 20 disagrees with drop_layers"),
        (PruneShape(depth=10), "the importance scores rank only 5"),
    ],
)
def test_bad_shapes_are_clear_errors(shape, message):
    with pytest.raises(ShapeError, match=message):
        select_units(EXACT_CFG, shape, random_scores(EXACT_CFG))


def test_width_pruning_without_scores_is_an_error():
    with pytest.raises(ShapeError, match="needs importance scores"):
        select_units(EXACT_CFG, PruneShape(ffn=256))
    with pytest.raises(ShapeError, match="rank only 0"):
        select_units(EXACT_CFG, PruneShape(depth=24))


def test_scores_of_another_parent_are_refused():
    scores = random_scores(get_config("tiny-9b"))
    with pytest.raises(Exception, match="not for this parent"):
        select_units(EXACT_CFG, PruneShape(ffn=256), scores)


def test_shape_flags_and_yaml(tmp_path):
    shape = parse_shape_flags(["depth=21", "hidden=112", "ffn=384", "mamba-heads=8", "drop_layers=19,20,21,24"])
    assert shape == PruneShape(depth=21, hidden=112, ffn=384, mamba_heads=8, drop_layers=[19, 20, 21, 24])
    path = tmp_path / "shape.yaml"
    path.write_text("hidden: 112\nffn: 384\n")
    assert load_shape([str(path)]) == PruneShape(hidden=112, ffn=384)
    with pytest.raises(ShapeError, match="expected key=value"):
        parse_shape_flags(["hidden"])
    with pytest.raises(ShapeError, match="hidden"):
        parse_shape_flags(["hidden=wide"])
    with pytest.raises(ShapeError, match="unknown key"):
        parse_shape_flags(["width=3"])
    path.write_text("hiden: 112\n")
    with pytest.raises(Exception, match=r"shape\.yaml: hiden: unknown key"):
        load_shape(str(path))
