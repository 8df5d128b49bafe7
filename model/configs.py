"""Named architectures of the Nemotron-H family as Nano 2 defines them, and `hybrid_override_pattern` utilities.

A pattern has one character per residual block: `M` Mamba-2, `*` self-attention, `-` squared-ReLU MLP (each block
has its own pre-norm). The 12B, 9B and 8B figures come from NVIDIA's configs (shared/docs/paper-facts.md §1).
`tiny-12b` / `tiny-9b` keep the same shape rules at a few million parameters for CPU work: the parent repeats the
12B's "M-M-M-M*-" rhythm, and the child is the parent pruned the way 12B -> 9B was (a few layers dropped, hidden and
FFN narrowed, all Mamba heads kept).

`to_hf_config` is the one place our config becomes a transformers `NemotronHConfig` (the format vLLM also loads).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nano2.errors import Nano2Error

MAMBA, ATTENTION, MLP = "M", "*", "-"
LAYER_KINDS = {MAMBA: "mamba", ATTENTION: "attention", MLP: "mlp"}


class PatternError(Nano2Error):
    """A hybrid_override_pattern that is not made of M, * and -."""


def parse_pattern(pattern: str) -> list[str]:
    """Validate a pattern and return its symbols; MoE (`E`) and MTP (`/`) are not part of Nano 2."""
    if not isinstance(pattern, str) or not pattern:
        raise PatternError("hybrid_override_pattern: expected a non-empty string of M, * and -")
    bad = sorted({c for c in pattern if c not in LAYER_KINDS})
    if bad:
        where = pattern.index(bad[0])
        raise PatternError(
            f"hybrid_override_pattern: invalid symbol {bad[0]!r} at position {where}; "
            "expected M (Mamba-2), * (attention) or - (MLP)"
        )
    return list(pattern)


def count_layers(pattern: str) -> dict[str, int]:
    """{'mamba': n, 'attention': n, 'mlp': n}."""
    counts = Counter(parse_pattern(pattern))
    return {name: counts.get(symbol, 0) for symbol, name in LAYER_KINDS.items()}


def layer_indices(pattern: str, symbol: str) -> list[int]:
    return [i for i, c in enumerate(parse_pattern(pattern)) if c == symbol]


def drop_layers(pattern: str, indices: list[int]) -> str:
    """The pattern with the blocks at `indices` (0-based, of the original) removed."""
    symbols = parse_pattern(pattern)
    bad = [i for i in indices if not 0 <= i < len(symbols)]
    if bad:
        raise PatternError(f"drop_layers: index {bad[0]} is outside the pattern (0..{len(symbols) - 1})")
    if len(set(indices)) != len(indices):
        raise PatternError("drop_layers: indices repeat")
    dropped = set(indices)
    out = "".join(c for i, c in enumerate(symbols) if i not in dropped)
    if not out:
        raise PatternError("drop_layers: nothing would be left")
    return out


def place_attention(pattern_without_attention: str, n_attention: int) -> str:
    """Insert `n_attention` attention blocks evenly: block k goes after the Mamba/MLP pair closest to depth
    (k + 0.5) / n of the stack, as Megatron's evenly spaced allocation does for a new depth."""
    symbols = parse_pattern(pattern_without_attention)
    if ATTENTION in symbols:
        raise PatternError("place_attention: the pattern already has attention layers")
    if n_attention < 0 or n_attention > len(symbols) + 1:
        raise PatternError(f"place_attention: cannot place {n_attention} attention layers in {len(symbols)} blocks")
    depth = len(symbols)
    # insertion points are after a Mamba block (the Nano 2 rhythm is "M*-": attention between a Mamba and its MLP)
    mamba_positions = [i + 1 for i, c in enumerate(symbols) if c == MAMBA] or list(range(depth + 1))
    chosen: list[int] = []
    for k in range(n_attention):
        target = (k + 0.5) * depth / n_attention
        candidates = [p for p in mamba_positions if p not in chosen]
        if not candidates:
            raise PatternError("place_attention: more attention layers than insertion points")
        chosen.append(min(candidates, key=lambda p: (abs(p - target), p)))
    out = list(symbols)
    for pos in sorted(chosen, reverse=True):
        out.insert(pos, ATTENTION)
    return "".join(out)


def relative_depths(pattern: str, symbol: str = ATTENTION) -> list[float]:
    """Positions of a layer kind as a fraction of the depth (for comparing a tiny model with its full-size twin)."""
    n = len(parse_pattern(pattern))
    return [i / (n - 1) for i in layer_indices(pattern, symbol)]


class HybridConfig(BaseModel):
    """Our description of a Nemotron-H hybrid; everything needed to count, build and run it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    pattern: str
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0, description="squared-ReLU MLP width")
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    mamba_num_heads: int = Field(gt=0)
    mamba_head_dim: int = Field(gt=0)
    ssm_state_size: int = Field(gt=0)
    n_groups: int = Field(gt=0)
    conv_kernel: int = Field(default=4, gt=0)
    chunk_size: int = Field(default=128, gt=0)
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)
    layer_norm_epsilon: float = 1e-5
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    description: str = ""

    @model_validator(mode="after")
    def _shapes_agree(self) -> HybridConfig:
        parse_pattern(self.pattern)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads (GQA)")
        if self.mamba_num_heads % self.n_groups:
            raise ValueError("mamba_num_heads must be a multiple of n_groups (heads are ranked within groups)")
        return self

    @property
    def num_layers(self) -> int:
        return len(self.pattern)

    @property
    def mamba_d_inner(self) -> int:
        return self.mamba_num_heads * self.mamba_head_dim

    @property
    def mamba_conv_dim(self) -> int:
        return self.mamba_d_inner + 2 * self.n_groups * self.ssm_state_size

    def counts(self) -> dict[str, int]:
        return count_layers(self.pattern)

    def with_(self, **changes: Any) -> HybridConfig:
        """A copy with some fields changed, validated again (used by pruning to describe a child)."""
        return HybridConfig.model_validate({**self.model_dump(), **changes})


def to_hf_config(cfg: HybridConfig, **overrides: Any):
    """The transformers `NemotronHConfig` for our config (no position embeddings, untied, squared ReLU, no biases)."""
    from transformers import NemotronHConfig

    kwargs: dict[str, Any] = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        hybrid_override_pattern=cfg.pattern,
        tie_word_embeddings=cfg.tie_word_embeddings,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        attention_bias=False,
        intermediate_size=cfg.intermediate_size,
        mlp_hidden_act="relu2",
        mlp_bias=False,
        ssm_state_size=cfg.ssm_state_size,
        mamba_num_heads=cfg.mamba_num_heads,
        mamba_head_dim=cfg.mamba_head_dim,
        mamba_hidden_act="silu",
        n_groups=cfg.n_groups,
        conv_kernel=cfg.conv_kernel,
        chunk_size=cfg.chunk_size,
        use_conv_bias=True,
        mamba_proj_bias=False,
        use_bias=False,
        mamba_ssm_cache_dtype="float32",
        layer_norm_epsilon=cfg.layer_norm_epsilon,
        initializer_range=cfg.initializer_range,
        residual_in_fp32=False,
        rescale_prenorm_residual=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    kwargs.update(overrides)
    return NemotronHConfig(**kwargs)


def from_hf_config(hf_config: Any, name: str = "checkpoint") -> HybridConfig:
    """Our config back from a `NemotronHConfig` (e.g. a downloaded checkpoint's config.json)."""
    return HybridConfig(
        name=name,
        pattern=hf_config.hybrid_override_pattern,
        hidden_size=hf_config.hidden_size,
        intermediate_size=hf_config.intermediate_size,
        num_attention_heads=hf_config.num_attention_heads,
        num_key_value_heads=hf_config.num_key_value_heads,
        head_dim=hf_config.head_dim,
        mamba_num_heads=hf_config.mamba_num_heads,
        mamba_head_dim=hf_config.mamba_head_dim,
        ssm_state_size=hf_config.ssm_state_size,
        n_groups=hf_config.n_groups,
        conv_kernel=hf_config.conv_kernel,
        chunk_size=hf_config.chunk_size,
        vocab_size=hf_config.vocab_size,
        max_position_embeddings=hf_config.max_position_embeddings,
        layer_norm_epsilon=hf_config.layer_norm_epsilon,
        tie_word_embeddings=hf_config.tie_word_embeddings,
        initializer_range=hf_config.initializer_range,
    )


PATTERN_12B = "M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-"
PATTERN_9B = "M-M-M-MM-M-M-M*-M-M-M*-M-M-M-M*-M-M-M-M*-M-MM-M-M-M-M-M-"
PATTERN_8B = "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-"
# tiny parent: the 12B rhythm ("M-" pairs, attention after every 3rd Mamba), 25 blocks, 3 attention layers.
PATTERN_TINY_12B = "M-M-M*-" * 3 + "M-M-"
# tiny child: drop one Mamba, one attention and two MLP blocks of the parent (12B -> 9B dropped 1 / 2 / 3 of 62).
TINY_9B_DROPPED = [19, 20, 21, 24]
PATTERN_TINY_9B = drop_layers(PATTERN_TINY_12B, TINY_9B_DROPPED)

_12B = dict(
    num_attention_heads=40, num_key_value_heads=8, head_dim=128, mamba_num_heads=128, mamba_head_dim=80,
    ssm_state_size=128, n_groups=8, conv_kernel=4, vocab_size=131072,
)  # fmt: skip
_TINY = dict(
    num_attention_heads=4, num_key_value_heads=2, head_dim=32, mamba_num_heads=8, mamba_head_dim=32,
    ssm_state_size=16, n_groups=2, conv_kernel=4, chunk_size=64, vocab_size=4096, max_position_embeddings=131072,
)  # fmt: skip

NAMED_CONFIGS: dict[str, HybridConfig] = {
    c.name: c
    for c in (
        HybridConfig(
            name="nano2-12b", pattern=PATTERN_12B, hidden_size=5120, intermediate_size=20480,
            max_position_embeddings=131072, **_12B,
            description="NVIDIA-Nemotron-Nano-12B-v2-Base: 62 layers (28 M / 6 * / 28 -), 12.31B parameters",
        ),
        HybridConfig(
            name="nano2-9b", pattern=PATTERN_9B, hidden_size=4480, intermediate_size=15680,
            max_position_embeddings=131072, **_12B,
            description="NVIDIA-Nemotron-Nano-9B-v2: the 12B pruned to 56 layers (27 / 4 / 25), 8.89B parameters",
        ),
        HybridConfig(
            name="nemotron-h-8b", pattern=PATTERN_8B, hidden_size=4096, intermediate_size=21504,
            num_attention_heads=32, num_key_value_heads=8, head_dim=128, mamba_num_heads=128, mamba_head_dim=64,
            ssm_state_size=128, n_groups=8, conv_kernel=4, vocab_size=131072, max_position_embeddings=8192,
            description="Nemotron-H-8B-Base-8K: 52 layers (24 / 4 / 24)",
        ),
        HybridConfig(
            name="tiny-12b", pattern=PATTERN_TINY_12B, hidden_size=128, intermediate_size=512, **_TINY,
            description="CPU parent with the 12B's shape rules (25 layers, 11 M / 3 * / 11 -)",
        ),
        HybridConfig(
            name="tiny-9b", pattern=PATTERN_TINY_9B, hidden_size=112, intermediate_size=384, **_TINY,
            description="CPU child: tiny-12b pruned like 12B -> 9B (21 layers, 10 M / 2 * / 9 -, hidden 112, FFN 384)",
        ),
    )
}  # fmt: skip


def get_config(name: str) -> HybridConfig:
    """A named architecture; an unknown name is one clear error listing the known ones."""
    try:
        return NAMED_CONFIGS[name]
    except KeyError:
        raise Nano2Error(f"unknown model config {name!r}; known: {', '.join(NAMED_CONFIGS)}") from None
