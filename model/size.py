"""Parameter and inference-memory arithmetic for the hybrid, checked against the real model.

Parameters are counted by formula from the config and, independently, by instantiating `NemotronHForCausalLM` on
the `meta` device; the two must agree exactly. Components: embedding, lm_head, mamba (in_proj, depthwise conv with
bias, dt_bias, A_log, D, the gated RMSNorm, out_proj), attention (q, k, v, o; no biases), mlp (up, down), norms (the
pre-norm of every block and the final norm).

Inference memory at a context length, batch and dtype: weights, the KV cache of the attention layers, and the Mamba
state: the conv window (kernel - 1 columns per channel, as vLLM keeps it, in the model dtype) and the SSM state in
fp32 (Nano 2 must run with `--mamba_ssm_cache_dtype float32`; its quality drops otherwise). A budget check compares
the total with a named GPU: `a10g` is the paper's rule, 22.06 GiB x 0.95 (framework buffer) - 1.3 GiB (reserved for
a vision encoder) = 19.66 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.configs import ATTENTION, MAMBA, MLP, HybridConfig
from nano2.errors import Nano2Error

GIB = 1024**3
DTYPE_BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "fp8": 1}
COMPONENTS = ("embedding", "lm_head", "mamba", "attention", "mlp", "norms")


def mamba_layer_params(cfg: HybridConfig) -> int:
    d_inner, conv_dim, heads, hidden = cfg.mamba_d_inner, cfg.mamba_conv_dim, cfg.mamba_num_heads, cfg.hidden_size
    in_proj = hidden * (d_inner + conv_dim + heads)  # z (gate), x|B|C (through the conv), dt
    conv = conv_dim * cfg.conv_kernel + conv_dim  # depthwise weights + bias
    per_head = 3 * heads  # dt_bias, A_log, D
    gated_norm = d_inner
    out_proj = d_inner * hidden
    return in_proj + conv + per_head + gated_norm + out_proj


def attention_layer_params(cfg: HybridConfig) -> int:
    q = cfg.num_attention_heads * cfg.head_dim
    kv = cfg.num_key_value_heads * cfg.head_dim
    return cfg.hidden_size * (q + 2 * kv) + q * cfg.hidden_size


def mlp_layer_params(cfg: HybridConfig) -> int:
    return 2 * cfg.hidden_size * cfg.intermediate_size


def param_breakdown(cfg: HybridConfig) -> dict[str, int]:
    """Parameters by component, by formula."""
    counts = cfg.counts()
    embedding = cfg.vocab_size * cfg.hidden_size
    return {
        "embedding": embedding,
        "lm_head": 0 if cfg.tie_word_embeddings else embedding,
        "mamba": counts["mamba"] * mamba_layer_params(cfg),
        "attention": counts["attention"] * attention_layer_params(cfg),
        "mlp": counts["mlp"] * mlp_layer_params(cfg),
        "norms": (cfg.num_layers + 1) * cfg.hidden_size,
    }


def meta_param_breakdown(cfg: HybridConfig) -> dict[str, int]:
    """Parameters by component, counted on a real `NemotronHForCausalLM` built on the meta device (no memory)."""
    import torch
    from transformers import NemotronHForCausalLM

    from model.configs import to_hf_config

    with torch.device("meta"):
        model = NemotronHForCausalLM(to_hf_config(cfg))
    out = dict.fromkeys(COMPONENTS, 0)
    kinds = {MAMBA: "mamba", ATTENTION: "attention", MLP: "mlp"}
    for name, p in model.named_parameters():
        parts = name.split(".")
        if name.startswith("model.embeddings"):
            out["embedding"] += p.numel()
        elif name.startswith("lm_head"):
            out["lm_head"] += p.numel()
        elif name.startswith("model.norm_f") or (parts[1] == "layers" and parts[3] == "norm"):
            out["norms"] += p.numel()
        elif parts[1] == "layers" and parts[3] == "mixer":
            out[kinds[cfg.pattern[int(parts[2])]]] += p.numel()
        else:
            raise Nano2Error(f"meta count: parameter {name!r} belongs to no known component")
    return out


def total_params(cfg: HybridConfig) -> int:
    return sum(param_breakdown(cfg).values())


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed to serve `batch` sequences of `context` tokens."""

    context: int
    batch: int
    dtype: str
    weights: int
    kv_cache: int
    mamba_conv: int
    mamba_ssm: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.mamba_conv + self.mamba_ssm


def _dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype.lower()]
    except KeyError:
        raise Nano2Error(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}") from None


def inference_memory(
    cfg: HybridConfig,
    context: int,
    batch: int = 1,
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    ssm_dtype: str = "fp32",
) -> MemoryEstimate:
    """Weights + KV cache + Mamba conv window + Mamba SSM state (fp32 by default, as Nano 2 requires)."""
    if context <= 0:
        raise Nano2Error(f"context must be a positive number of tokens, got {context}")
    if batch <= 0:
        raise Nano2Error(f"batch must be positive, got {batch}")
    w, kv, ssm = _dtype_bytes(dtype), _dtype_bytes(kv_dtype or dtype), _dtype_bytes(ssm_dtype)
    counts = cfg.counts()
    kv_cache = counts["attention"] * 2 * cfg.num_key_value_heads * cfg.head_dim * context * batch * kv
    conv = counts["mamba"] * cfg.mamba_conv_dim * (cfg.conv_kernel - 1) * batch * w
    state = counts["mamba"] * cfg.mamba_num_heads * cfg.mamba_head_dim * cfg.ssm_state_size * batch * ssm
    return MemoryEstimate(context, batch, dtype, total_params(cfg) * w, kv_cache, conv, state)


@dataclass(frozen=True)
class GpuBudget:
    name: str
    memory_gib: float
    framework_fraction: float = 0.05
    reserved_gib: float = 0.0
    note: str = ""

    @property
    def budget_gib(self) -> float:
        return self.memory_gib * (1 - self.framework_fraction) - self.reserved_gib

    @property
    def budget_bytes(self) -> int:
        return int(self.budget_gib * GIB)


GPUS = {
    "a10g": GpuBudget("a10g", 22.06, 0.05, 1.3, "paper rule: 22.06 GiB x 0.95 - 1.3 GiB reserved for a vision encoder"),
    "h100": GpuBudget("h100", 81559 / 1024, 0.05, 0.0, "H100 80GB (81,559 MiB) x 0.95"),
    "h200": GpuBudget("h200", 143771 / 1024, 0.05, 0.0, "H200 141GB (143,771 MiB) x 0.95"),
}


def get_gpu(name: str) -> GpuBudget:
    """A named GPU, or `custom:GIB` for a budget of GIB GiB used as is."""
    if name.lower().startswith("custom:"):
        try:
            gib = float(name.split(":", 1)[1])
        except ValueError:
            raise Nano2Error(f"--gpu {name!r}: expected custom:GIB, e.g. custom:40") from None
        if gib <= 0:
            raise Nano2Error(f"--gpu {name!r}: the budget must be positive")
        return GpuBudget("custom", gib, 0.0, 0.0, f"custom budget of {gib:g} GiB")
    try:
        return GPUS[name.lower()]
    except KeyError:
        raise Nano2Error(f"unknown GPU {name!r}; known: {', '.join(GPUS)}, or custom:GIB") from None


def max_context(cfg: HybridConfig, gpu: GpuBudget, batch: int = 1, dtype: str = "bf16") -> int:
    """The longest context whose memory fits the GPU's budget (0 when even the fixed part does not fit)."""
    one = inference_memory(cfg, 1, batch, dtype)
    per_token = one.kv_cache
    fixed = one.total - per_token
    room = gpu.budget_bytes - fixed
    if room < per_token:
        return 0
    return room // per_token if per_token else 2**62


def max_batch(cfg: HybridConfig, context: int, budget_bytes: int, dtype: str = "bf16", ssm_dtype: str = "fp32") -> int:
    """The largest batch whose weights + KV cache + Mamba state at `context` tokens fit `budget_bytes` (0 when even
    one sequence does not): how many sequences a model serves at once in a fixed memory, the paper's comparison."""
    one = inference_memory(cfg, context, 1, dtype, ssm_dtype=ssm_dtype)
    per_sequence = one.total - one.weights
    room = budget_bytes - one.weights
    return max(room // per_sequence, 0) if per_sequence else 0
