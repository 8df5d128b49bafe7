"""Named configs, pattern utilities, parameter counts (formula == meta device) and memory arithmetic."""

from __future__ import annotations

import pytest

from model.configs import (
    NAMED_CONFIGS,
    PATTERN_9B,
    PATTERN_12B,
    PatternError,
    count_layers,
    drop_layers,
    get_config,
    layer_indices,
    parse_pattern,
    place_attention,
    relative_depths,
    to_hf_config,
)
from model.size import (
    GIB,
    GPUS,
    get_gpu,
    inference_memory,
    max_context,
    meta_param_breakdown,
    param_breakdown,
    total_params,
)
from nano2.errors import Nano2Error


@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
def test_formula_equals_meta_device_count(name):
    cfg = get_config(name)
    assert param_breakdown(cfg) == meta_param_breakdown(cfg)


def test_paper_parameter_counts():
    assert abs(total_params(get_config("nano2-12b")) / 1e9 - 12.31) <= 0.005
    assert abs(total_params(get_config("nano2-9b")) / 1e9 - 8.89) <= 0.005


def test_pattern_counts_and_positions():
    assert count_layers(PATTERN_12B) == {"mamba": 28, "attention": 6, "mlp": 28}
    assert count_layers(PATTERN_9B) == {"mamba": 27, "attention": 4, "mlp": 25}
    assert layer_indices(PATTERN_12B, "*") == [7, 16, 25, 34, 43, 52]
    assert layer_indices(PATTERN_9B, "*") == [14, 21, 30, 39]
    assert len(PATTERN_12B) == 62 and len(PATTERN_9B) == 56


def test_hf_config_matches():
    hf = to_hf_config(get_config("nano2-12b"))
    assert hf.hybrid_override_pattern == PATTERN_12B
    assert hf.num_hidden_layers == 62 and hf.mamba_head_dim == 80 and hf.mamba_num_heads == 128
    assert hf.mlp_hidden_act == "relu2" and hf.tie_word_embeddings is False and hf.vocab_size == 131072


def test_tiny_family_keeps_the_shape_rules():
    parent, child = get_config("tiny-12b"), get_config("tiny-9b")
    assert 1e6 < total_params(child) < total_params(parent) < 10e6
    assert parent.mamba_num_heads == child.mamba_num_heads  # the 9B kept all Mamba heads
    assert child.hidden_size < parent.hidden_size and child.intermediate_size < parent.intermediate_size
    pc, cc = parent.counts(), child.counts()
    assert cc["mamba"] == pc["mamba"] - 1 and cc["attention"] == pc["attention"] - 1
    # attention spread over the depth like the 12B's (first in the first quarter, last in the last third)
    for cfg in (parent, get_config("nano2-12b")):
        depths = relative_depths(cfg.pattern)
        assert depths[0] < 0.25 and depths[-1] > 0.7


def test_drop_layers_12b_to_9b_counts():
    # removing 1 Mamba, 2 attention and 3 MLP blocks of the 12B gives the 9B's counts
    drop = [layer_indices(PATTERN_12B, "M")[-1], 43, 52, *layer_indices(PATTERN_12B, "-")[-3:]]
    assert count_layers(drop_layers(PATTERN_12B, drop)) == count_layers(PATTERN_9B)


def test_place_attention_evenly():
    pattern = place_attention("M-" * 28, 6)
    assert count_layers(pattern) == {"mamba": 28, "attention": 6, "mlp": 28}
    gaps = [b - a for a, b in zip(layer_indices(pattern, "*"), layer_indices(pattern, "*")[1:], strict=False)]
    assert max(gaps) - min(gaps) <= 2
    assert "**" not in pattern and all(pattern[i - 1] == "M" for i in layer_indices(pattern, "*"))


@pytest.mark.parametrize("bad", ["", "M-X", "M-E", "M/-", None])
def test_invalid_patterns(bad):
    with pytest.raises(PatternError):
        parse_pattern(bad)


def test_bad_drop_indices():
    with pytest.raises(PatternError, match="outside"):
        drop_layers("M-*", [3])
    with pytest.raises(PatternError, match="repeat"):
        drop_layers("M-*", [1, 1])


def test_unknown_config_name():
    with pytest.raises(Nano2Error, match=r"unknown model config 'nano3'.*nano2-12b"):
        get_config("nano3")


def test_memory_at_128k_against_the_paper_rule():
    a10g = GPUS["a10g"]
    assert abs(a10g.budget_gib - 19.657) < 1e-9
    nine = inference_memory(get_config("nano2-9b"), 131072)
    twelve = inference_memory(get_config("nano2-12b"), 131072)
    assert nine.kv_cache == 4 * 2 * 8 * 128 * 131072 * 2  # 2 GiB exactly
    assert abs(nine.mamba_ssm / GIB - 0.132) < 0.001  # fp32 SSM state, 27 layers x 128 x 80 x 128 x 4 B
    assert nine.total <= a10g.budget_bytes < twelve.weights  # the 9B fits; the 12B's weights alone do not
    assert max_context(get_config("nano2-9b"), a10g) >= 131072
    assert max_context(get_config("nano2-12b"), a10g) == 0


def test_memory_bad_input():
    cfg = get_config("nano2-9b")
    with pytest.raises(Nano2Error, match="positive"):
        inference_memory(cfg, -1)
    with pytest.raises(Nano2Error, match="unknown dtype"):
        inference_memory(cfg, 10, dtype="int3")
    with pytest.raises(Nano2Error, match="unknown GPU"):
        get_gpu("a100x")
    assert get_gpu("custom:40").budget_gib == 40


def test_cli_size_prints_fits(cli):
    result = cli("model", "size", "nano2-9b", "--context", "131072", "--gpu", "a10g")
    assert result.code == 0, result.err
    assert "fits on a10g" in result.out and "8,888,227,328" in result.out and "does not fit" not in result.out
    assert "does not fit" in cli("model", "size", "nano2-12b", "--no-meta").out


def test_cli_size_errors(cli):
    for args, needle in (
        (("model", "size", "nano2-13b"), "unknown model config"),
        (("model", "size", "nano2-9b", "--context", "-5"), "--context"),
        (("model", "size", "nano2-9b", "--gpu", "tpu"), "unknown GPU"),
    ):
        result = cli(*args)
        assert result.code == 2 and needle in result.err and len(result.err.strip().splitlines()) == 1
