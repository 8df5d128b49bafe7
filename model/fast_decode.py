"""A decode engine for NemotronH checkpoints: preallocated state, pre-arranged weights, few ops per layer.

Why: transformers' incremental decode walks a generic cache object per layer and runs the Mamba-2 step as ~30
small ops with reshapes and dtype round trips, and its matrix-vector products run on one thread; on a CPU the
Mamba step then costs more than the attention it replaces until the context is very long. Here:

* all decode state is allocated once: per Mamba layer the last kernel - 1 conv inputs (batch, conv_dim, kernel - 1)
  in the model dtype (the layout vLLM keeps and `model/size.py` counts) and the SSM state (batch, heads, head_dim,
  state) in fp32; per attention layer a K and a V buffer (batch, kv_heads, max_len, head_dim). A step updates
  them in place and allocates nothing that grows;
* a decode-step linear layer is a `bmm` over the weight viewed as row blocks (a free view), which streams the
  weight on every core instead of one, for a few rows; from `_MANY_ROWS` rows on (batched decode) it is a plain
  `F.linear`, a matrix product that is compute-bound and already threaded (see `_Linear`); q/k/v are one fused
  projection;
* the Mamba step between in_proj and out_proj (`_mamba_core`) is one function over preallocated state:
  conv-window shift and depthwise conv, dt = softplus(dt + dt_bias) clamped, state = state * exp(dt A) +
  dt x (x) B, y = state . C + D x, gated RMSNorm. With `compile=True` it goes through `torch.compile` (one C++ loop
  shared by every Mamba layer);
* attention writes k/v at `position` and runs `scaled_dot_product_attention` over the valid prefix of the buffer,
  a view (no copy, no mask); GQA rides the query-length axis (the heads of one KV head are its queries), so K/V
  are never repeated. Its cost is the only one that grows with the context.

Batched decode: every state buffer is batch-major, so the first `b` rows of a buffer are the live sequences and a
step over b sequences touches one contiguous block per layer; `prefill(..., row_chunk=N)` fills the buffers N rows
at a time, so a large batch never holds more than N prompts' activations. `memory_bytes()` measures what a decoder
holds (weights, KV cache, conv window, SSM state), to check `model.size.inference_memory` against.

Numerics follow transformers' full (chunked) forward, the reference: dt is clamped to `time_step_min` as the chunk
scan does (the transformers single-token path does not clamp), dt + dt_bias and its softplus are in the model
dtype as transformers does, the conv output is rounded to the model dtype, the SSM state and the rest of the
Mamba arithmetic are fp32, the gated RMSNorm multiplies by silu(gate) in fp32 *before* normalising each group of
d_inner / n_groups channels, block RMSNorms multiply their weight in fp32 and cast back, residuals stay in the
model dtype and logits are fp32. Prefill runs transformers' own chunked scan (`mamba2_chunk_scan`) and causal SDPA.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nano2.errors import Nano2Error

MAMBA_KIND, ATTENTION_KIND, MLP_KIND = "linear_attention", "full_attention", "mlp"
KIND_NAMES = {MAMBA_KIND: "mamba", ATTENTION_KIND: "attention", MLP_KIND: "mlp"}


class DecodeError(Nano2Error):
    """A decode request the preallocated engine cannot serve (too long, too wide, or not a NemotronH model)."""


class _Linear:
    """A bias-free linear layer laid out for both phases.

    Prefill (many rows) uses F.linear. A decode step multiplies a few rows by the weight, which is bound by how fast
    the weight streams from memory; on CPU, F.linear / mm run such a product on one thread at ~8 GB/s, while a
    `bmm` over the weight viewed as `split` row blocks runs the blocks on all threads (~25-35 GB/s on the 2-core
    benchmark machine; 4 blocks beat 2 there). The view is free: no copy of the weight is made. `split` is rounded
    down to a divisor of the output size.
    """

    __slots__ = ("blocks", "out_features", "weight")
    _MANY_ROWS = 32  # from here on a step is a real matrix product: mm is threaded and beats the split bmm

    def __init__(self, weight: torch.Tensor, split: int):
        self.weight = weight.detach()
        self.out_features = int(weight.shape[0])
        split = max(k for k in range(1, max(split, 1) + 1) if self.out_features % k == 0)
        self.blocks = self.weight.view(split, self.out_features // split, -1) if split > 1 else None

    def step(self, h: torch.Tensor) -> torch.Tensor:
        """(b, in) -> (b, out)."""
        if self.blocks is None or h.shape[0] >= self._MANY_ROWS:
            return F.linear(h, self.weight)
        k = self.blocks.shape[0]
        out = torch.bmm(self.blocks, h.t().expand(k, -1, -1))  # (k, out/k, b)
        return out.view(self.out_features, -1).t().contiguous()

    def seq(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.weight)


@dataclass
class _Norm:
    weight: torch.Tensor  # fp32
    eps: float


@dataclass
class _MambaLayer:
    norm: _Norm
    in_proj: _Linear  # -> z (gate) | x, B, C (through the conv) | dt
    conv_w: torch.Tensor  # (conv_dim, kernel), fp32
    conv_b: torch.Tensor  # (conv_dim,), fp32
    dt_bias: torch.Tensor  # (heads,), model dtype: transformers adds it and applies softplus in that dtype
    A: torch.Tensor  # -exp(A_log), (heads,), fp32
    D: torch.Tensor  # (heads, 1), fp32
    gnorm_w: torch.Tensor  # (d_inner,), fp32
    gnorm_eps: float
    out_proj: _Linear
    d_inner: int
    conv_dim: int
    heads: int
    head_dim: int
    groups: int
    state: int
    kernel: int
    dt_min: float
    conv_state: torch.Tensor = field(repr=False)  # (max_batch, conv_dim, kernel - 1), model dtype
    ssm_state: torch.Tensor = field(repr=False)  # (max_batch, heads, head_dim, state), fp32


@dataclass
class _AttentionLayer:
    norm: _Norm
    qkv: _Linear  # q, k and v projections fused
    o_proj: _Linear
    heads: int
    kv_heads: int
    head_dim: int
    k_cache: torch.Tensor = field(repr=False)  # (max_batch, kv_heads, max_len, head_dim), model dtype
    v_cache: torch.Tensor = field(repr=False)


@dataclass
class _MLPLayer:
    norm: _Norm
    up: _Linear
    down: _Linear


_Layer = _MambaLayer | _AttentionLayer | _MLPLayer


def _rms(x: torch.Tensor, norm: _Norm) -> torch.Tensor:
    """NemotronHRMSNorm: normalise and multiply by the weight in fp32, then cast back to the input dtype."""
    return F.rms_norm(x.float(), norm.weight.shape, norm.weight, norm.eps).to(x.dtype)


def _gated_rms(y: torch.Tensor, gate: torch.Tensor, layer: _MambaLayer) -> torch.Tensor:
    """NemotronHRMSNormGated with norm_before_gate=False: y * silu(gate) in fp32, then RMS over d_inner/n_groups
    (one RMS per group, not over all of d_inner), then the weight; y is fp32 already."""
    h = y * F.silu(gate.float())
    *prefix, last = h.shape
    size = last // layer.groups
    g = F.rms_norm(h.view(*prefix, layer.groups, size), (size,), None, layer.gnorm_eps)
    return layer.gnorm_w * g.view(*prefix, last)


SsmUpdate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _ssm_update_eager(
    ssm: torch.Tensor, decay: torch.Tensor, dtx: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    """state = state * decay + dtx (x) B in place, then y = state . C (a batched matrix-vector product)."""
    ssm.mul_(decay).addcmul_(dtx, B)
    return torch.matmul(ssm, C.transpose(-1, -2)).squeeze(-1)


def _ssm_update_fused(
    ssm: torch.Tensor, decay: torch.Tensor, dtx: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    """The same as one expression whose result is both stored and reduced: under torch.compile inductor emits one
    loop that reads the state once, writes it and accumulates y (at batch 1380 here: 22 ms, one plain pass over
    the state 17 ms, eager ~70 ms). Eager torch would run it as four passes, so it is only used compiled."""
    new = ssm * decay + dtx * B
    ssm.copy_(new)
    return (new * C).sum(-1)


def _mamba_core(zxbcdt: torch.Tensor, layer: _MambaLayer, ssm_update: SsmUpdate = _ssm_update_eager) -> torch.Tensor:
    """Everything of a Mamba-2 decode step between in_proj and out_proj, for every sequence: conv window, SSM
    update and readout, gated RMSNorm. Updates the layer's conv window and SSM state in place.

    The SSM state is the big operand at large batch (batch x heads x head_dim x state fp32); `ssm_update` is how
    it is updated and read out (see `_ssm_update_fused`).

    Heads are laid out (group, head-in-group) as transformers expands B and C, so B and C broadcast over the
    heads of their group as views instead of being repeated.
    """
    b, dtype = zxbcdt.shape[0], zxbcdt.dtype
    z, xbc, dt = zxbcdt.split([layer.d_inner, layer.conv_dim, layer.heads], dim=-1)
    conv_state = layer.conv_state[:b]
    window = torch.cat([conv_state, xbc.unsqueeze(-1).to(conv_state.dtype)], dim=-1)  # (b, conv_dim, kernel)
    conv_state.copy_(window[:, :, 1:])
    xbc = F.silu(torch.linalg.vecdot(window.float(), layer.conv_w) + layer.conv_b).to(dtype)  # rounded as HF
    n = layer.groups * layer.state
    x, B, C = xbc.float().split([layer.d_inner, n, n], dim=-1)
    dt = F.softplus(dt + layer.dt_bias).clamp_(min=layer.dt_min).float()  # (b, heads); clamped as the chunk scan does
    grouped = (b, layer.groups, layer.heads // layer.groups, layer.head_dim)
    x = x.view(b, layer.heads, layer.head_dim)
    ssm = layer.ssm_state[:b].view(*grouped, layer.state)
    decay = torch.exp(dt * layer.A).view(*grouped[:3], 1, 1)
    dtx = (x * dt.unsqueeze(-1)).view(*grouped, 1)
    B, C = B.view(b, layer.groups, 1, 1, layer.state), C.view(b, layer.groups, 1, 1, layer.state)
    y = ssm_update(ssm, decay, dtx, B, C)
    y = torch.addcmul(y.view(b, layer.heads, layer.head_dim), layer.D, x)
    return _gated_rms(y.view(b, layer.d_inner), z, layer).to(dtype)


def _mlp_step(h: torch.Tensor, layer: _MLPLayer) -> torch.Tensor:
    return layer.down.step(torch.relu(layer.up.step(h)).square_())


def _qkv(h: torch.Tensor, layer: _AttentionLayer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q as (b, kv_heads, heads/kv_heads, head_dim) so GQA needs no repeat; k, v as (b, kv_heads, head_dim)."""
    b = h.shape[0]
    q_dim, kv_dim = layer.heads * layer.head_dim, layer.kv_heads * layer.head_dim
    q, k, v = layer.qkv.step(h).split([q_dim, kv_dim, kv_dim], dim=-1)
    rep = layer.heads // layer.kv_heads
    return (
        q.view(b, layer.kv_heads, rep, layer.head_dim),
        k.view(b, layer.kv_heads, layer.head_dim),
        v.view(b, layer.kv_heads, layer.head_dim),
    )


@functools.cache
def _compiled_mamba_core() -> Callable[[torch.Tensor, _MambaLayer], torch.Tensor]:
    """`_mamba_core` through torch.compile (~20 small ops fused into one C++ loop), built once per process.

    Every Mamba layer of every decoder with the same shapes shares one graph (weights and states are graph
    inputs), so a model compiles once per batch size. The in/out projections stay outside: inductor would fuse
    them into its own reduction loops, which stream the weights at about half the speed of the split `bmm`.
    """
    return torch.compile(functools.partial(_mamba_core, ssm_update=_ssm_update_fused), dynamic=False)


@functools.cache
def _batched_mamba_core() -> Callable[[torch.Tensor, _MambaLayer], torch.Tensor]:
    """`_mamba_core` for many sequences: eager, with only the SSM update compiled. Compiled whole, inductor's one
    graph ran slower than eager at batch 1380 (137 vs 100 ms a layer here) while the update alone runs in one pass
    over the state; at a few sequences the whole-core graph wins (launch overhead dominates there)."""
    return functools.partial(_mamba_core, ssm_update=torch.compile(_ssm_update_fused, dynamic=False))


class FastDecoder:
    """Prefill once, then decode one token per sequence per `step()` from preallocated state.

    `prefill` starts new sequences (equal-length prompts); `step` appends one token to every sequence; `position`
    counts tokens so far. State for `max_batch` sequences of up to `max_len` tokens is allocated here, once. The
    large weights are views of the model's own tensors (only q/k/v are concatenated, and the small per-channel
    vectors copied to fp32), so building a decoder costs almost no memory; rebuild it if the model's weights change.

    `compile=True` runs the Mamba step core through `torch.compile`: on the 2-core benchmark machine a hybrid
    token drops from ~2.9 to ~2.5 ms, for a one-time compile of ~5 s per process and batch size (~1.5 s from
    inductor's on-disk cache), so it pays only for long generations and is off by default. `gemv_split` is the
    number of row blocks of each decode-step weight on CPU (default: max(4, threads)).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        max_batch: int = 1,
        max_len: int = 4096,
        compile: bool = False,
        gemv_split: int | None = None,
    ):
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "layers_block_type") or not hasattr(model, "model"):
            raise DecodeError("FastDecoder: expected a transformers NemotronHForCausalLM")
        kinds = list(config.layers_block_type)
        unknown = sorted(set(kinds) - set(KIND_NAMES))
        if unknown:
            raise DecodeError(f"FastDecoder: unsupported NemotronH block type {unknown[0]!r} (only M, * and -)")
        if max_batch < 1 or max_len < 1:
            raise DecodeError(f"FastDecoder: max_batch and max_len must be >= 1 (got {max_batch}, {max_len})")
        self.config, self.kinds = config, kinds
        self.max_batch, self.max_len = int(max_batch), int(max_len)
        lm_head = model.get_output_embeddings().weight
        self.device, self.dtype = lm_head.device, lm_head.dtype
        split = max(4, torch.get_num_threads()) if gemv_split is None else int(gemv_split)
        self._split = split if self.device.type == "cpu" else 1
        self.compile = bool(compile)
        self._mamba_core = _compiled_mamba_core() if self.compile else _mamba_core
        self._mamba_core_batched = _batched_mamba_core() if self.compile else _mamba_core
        with torch.no_grad():
            self.layers = [self._arrange(block) for block in model.model.layers]
            self.embedding = model.model.embeddings.weight.detach()
            self.final_norm = _Norm(model.model.norm_f.weight.detach().float(), model.model.norm_f.variance_epsilon)
            self.lm_head = _Linear(lm_head, self._split)
        self.chunk_size = int(config.chunk_size)
        self.vocab_size = int(self.embedding.shape[0])
        self._position = 0
        self._batch = 0

    # ----------------------------------------------------------------------------------------------- setup
    def _arrange(self, block: torch.nn.Module) -> _Layer:
        """Take one block's weights in the layout the step uses and allocate its decode state."""
        norm = _Norm(block.norm.weight.detach().float().clone(), block.norm.variance_epsilon)
        mixer, kind = block.mixer, block.block_type
        dev, dtype, split = self.device, self.dtype, self._split
        if kind == MAMBA_KIND:
            conv_dim, kernel, heads = mixer.conv_dim, mixer.conv_kernel_size, mixer.num_heads
            bias = mixer.conv1d.bias
            return _MambaLayer(
                norm=norm,
                in_proj=_Linear(mixer.in_proj.weight, split),
                conv_w=mixer.conv1d.weight.detach().float().reshape(conv_dim, kernel).clone(),
                conv_b=torch.zeros(conv_dim, device=dev) if bias is None else bias.detach().float().clone(),
                dt_bias=mixer.dt_bias.detach().clone(),
                A=-torch.exp(mixer.A_log.detach().float()),
                D=mixer.D.detach().float().reshape(heads, 1).clone(),
                gnorm_w=mixer.norm.weight.detach().float().clone(),
                gnorm_eps=mixer.norm.variance_epsilon,
                out_proj=_Linear(mixer.out_proj.weight, split),
                d_inner=mixer.intermediate_size,
                conv_dim=conv_dim,
                heads=heads,
                head_dim=mixer.head_dim,
                groups=mixer.n_groups,
                state=mixer.ssm_state_size,
                kernel=kernel,
                dt_min=float(mixer.time_step_limit[0]),
                conv_state=torch.zeros(self.max_batch, conv_dim, kernel - 1, device=dev, dtype=dtype),
                ssm_state=torch.zeros(self.max_batch, heads, mixer.head_dim, mixer.ssm_state_size, device=dev),
            )
        if kind == ATTENTION_KIND:
            if any(p.bias is not None for p in (mixer.q_proj, mixer.k_proj, mixer.v_proj, mixer.o_proj)):
                raise DecodeError("FastDecoder: attention biases are not supported (Nano 2 has none)")
            kv_heads, head_dim = mixer.config.num_key_value_heads, mixer.head_dim
            if not math.isclose(mixer.scaling, head_dim**-0.5):
                raise DecodeError("FastDecoder: attention scaling other than head_dim**-0.5 is not supported")
            cache = (self.max_batch, kv_heads, self.max_len, head_dim)
            return _AttentionLayer(
                norm=norm,
                qkv=_Linear(torch.cat([mixer.q_proj.weight, mixer.k_proj.weight, mixer.v_proj.weight]), split),
                o_proj=_Linear(mixer.o_proj.weight, split),
                heads=mixer.config.num_attention_heads,
                kv_heads=kv_heads,
                head_dim=head_dim,
                k_cache=torch.zeros(cache, device=dev, dtype=dtype),
                v_cache=torch.zeros(cache, device=dev, dtype=dtype),
            )
        if mixer.up_proj.bias is not None or mixer.down_proj.bias is not None:
            raise DecodeError("FastDecoder: MLP biases are not supported (Nano 2 has none)")
        return _MLPLayer(
            norm=norm, up=_Linear(mixer.up_proj.weight, split), down=_Linear(mixer.down_proj.weight, split)
        )

    # ----------------------------------------------------------------------------------------------- state
    @property
    def position(self) -> int:
        """Tokens so far in every sequence (prompt plus generated)."""
        return self._position

    @property
    def batch(self) -> int:
        """Sequences being decoded (0 before the first prefill and after reset)."""
        return self._batch

    def reset(self) -> None:
        """Forget the current sequences: zero every state buffer, so nothing of them can leak into the next."""
        with torch.inference_mode():
            for layer in self.layers:
                if isinstance(layer, _MambaLayer):
                    layer.conv_state.zero_()
                    layer.ssm_state.zero_()
                elif isinstance(layer, _AttentionLayer):
                    layer.k_cache.zero_()
                    layer.v_cache.zero_()
        self._position = 0
        self._batch = 0

    def _check_room(self, batch: int, new_tokens: int) -> None:
        if not 1 <= batch <= self.max_batch:
            raise DecodeError(f"FastDecoder: batch {batch} is outside 1..max_batch={self.max_batch}")
        if self._position + new_tokens > self.max_len:
            raise DecodeError(
                f"FastDecoder: {self._position} + {new_tokens} tokens would exceed max_len={self.max_len}; "
                "build the decoder with a larger max_len"
            )

    # ----------------------------------------------------------------------------------------------- prefill
    def prefill(self, input_ids: torch.Tensor, row_chunk: int | None = None) -> torch.Tensor:
        """Start new sequences from equal-length prompts (batch, seq); returns the last position's logits.

        Runs the full forward with transformers' chunked Mamba-2 scan and causal SDPA (the math of
        `model(input_ids)`), keeping the final SSM states, the last conv inputs and the K/V of every position.
        `row_chunk` runs the prompts that many at a time (each chunk fills its own rows of the state), so the
        activations of a large batch never exceed those of `row_chunk` prompts; the result is the same.
        """
        if input_ids.dim() != 2 or input_ids.shape[1] < 1:
            raise DecodeError("FastDecoder.prefill: expected input_ids of shape (batch, seq) with seq >= 1")
        if row_chunk is not None and row_chunk < 1:
            raise DecodeError(f"FastDecoder.prefill: row_chunk must be >= 1 (got {row_chunk})")
        self.reset()
        batch, seq = input_ids.shape
        self._check_room(batch, seq)
        chunk = batch if row_chunk is None else int(row_chunk)
        input_ids = input_ids.to(self.device)
        with torch.inference_mode():
            logits = torch.cat(
                [self._prefill_rows(input_ids, slice(s, min(s + chunk, batch))) for s in range(0, batch, chunk)]
            )
        self._position, self._batch = seq, batch
        return logits

    def _prefill_rows(self, input_ids: torch.Tensor, rows: slice) -> torch.Tensor:
        """Prefill the prompts `input_ids[rows]` into the same rows of every state buffer."""
        x = F.embedding(input_ids[rows], self.embedding)
        for layer in self.layers:
            h = _rms(x, layer.norm)
            if isinstance(layer, _MambaLayer):
                x = x + self._mamba_prefill(h, layer, rows)
            elif isinstance(layer, _AttentionLayer):
                x = x + self._attention_prefill(h, layer, rows)
            else:
                x = x + layer.down.seq(torch.relu(layer.up.seq(h)).square())
        return self.lm_head.seq(_rms(x[:, -1], self.final_norm)).float()

    def seek(self, position: int, batch: int | None = None) -> None:
        """Move every sequence to `position` (and to `batch` live rows) without computing the tokens between.

        For timing only: a decode step costs the same whatever the cached values are, so a benchmark can time
        steps at cache length 16k without decoding 16k tokens first. Positions not prefilled hold whatever the
        buffers hold (zeros after `reset`), so the logits after a seek are not a model's output.
        """
        batch = self._batch if batch is None else int(batch)
        if not 1 <= batch <= self.max_batch:
            raise DecodeError(f"FastDecoder.seek: batch {batch} is outside 1..max_batch={self.max_batch}")
        if not 0 <= position < self.max_len:
            raise DecodeError(f"FastDecoder.seek: position {position} is outside 0..max_len-1={self.max_len - 1}")
        self._position, self._batch = int(position), batch

    def memory_bytes(self) -> dict[str, int]:
        """Bytes this decoder holds, measured on its tensors: `weights` (every distinct storage of the model's
        parameters and of the decoder's own copies, counted once), `kv_cache`, `mamba_conv`, `mamba_ssm`."""
        seen: set[int] = set()

        def once(tensors: list[torch.Tensor]) -> int:
            total = 0
            for t in tensors:
                storage = t.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
            return total

        state = {
            "kv_cache": once(
                [t for ly in self.layers if isinstance(ly, _AttentionLayer) for t in (ly.k_cache, ly.v_cache)]
            ),
            "mamba_conv": once([ly.conv_state for ly in self.layers if isinstance(ly, _MambaLayer)]),
            "mamba_ssm": once([ly.ssm_state for ly in self.layers if isinstance(ly, _MambaLayer)]),
        }
        weights = [self.embedding, self.lm_head.weight, self.final_norm.weight]
        for ly in self.layers:
            weights += [
                v.weight if isinstance(v, _Linear | _Norm) else v
                for v in vars(ly).values()
                if isinstance(v, torch.Tensor | _Linear | _Norm)
            ]
        return {"weights": once(weights), **state}

    def _mamba_prefill(self, h: torch.Tensor, layer: _MambaLayer, rows: slice) -> torch.Tensor:
        from transformers.models.nemotron_h import modeling_nemotron_h as hf

        b, seq, _ = h.shape
        z, xbc, dt = layer.in_proj.seq(h).split([layer.d_inner, layer.conv_dim, layer.heads], dim=-1)
        xbc_t = xbc.transpose(1, 2)  # (b, conv_dim, seq)
        window = layer.kernel - 1  # the last kernel - 1 inputs, zero-padded on the left for a short prompt
        padded = F.pad(xbc_t, (max(window - seq, 0), 0))
        layer.conv_state[rows].copy_(padded[:, :, padded.shape[2] - window :])
        weight, bias = layer.conv_w.to(h.dtype).unsqueeze(1), layer.conv_b.to(h.dtype)  # as transformers: model dtype
        conv = F.conv1d(xbc_t, weight, bias, padding=layer.kernel - 1, groups=layer.conv_dim)[:, :, :seq]
        x, B, C = F.silu(conv).transpose(1, 2).split([layer.d_inner, *[layer.groups * layer.state] * 2], dim=-1)
        scan = hf.mamba2_chunk_scan
        if self.device.type == "cpu":  # the plain-torch reference, without the kernel-lookup warning
            scan = getattr(scan, "__wrapped__", scan)
        y, final = scan(
            x.reshape(b, seq, layer.heads, layer.head_dim),
            dt,
            layer.A,
            B.reshape(b, seq, layer.groups, layer.state),
            C.reshape(b, seq, layer.groups, layer.state),
            chunk_size=self.chunk_size,
            D=layer.D.view(-1),
            dt_bias=layer.dt_bias,
            dt_softplus=True,
            dt_limit=(layer.dt_min, float("inf")),
            return_final_states=True,
        )
        layer.ssm_state[rows].copy_(final)
        y = _gated_rms(y.reshape(b, seq, layer.d_inner).float(), z, layer)
        return layer.out_proj.seq(y.to(h.dtype))

    def _attention_prefill(self, h: torch.Tensor, layer: _AttentionLayer, rows: slice) -> torch.Tensor:
        b, seq, _ = h.shape
        q_dim, kv_dim = layer.heads * layer.head_dim, layer.kv_heads * layer.head_dim
        q, k, v = layer.qkv.seq(h).split([q_dim, kv_dim, kv_dim], dim=-1)
        q = q.view(b, seq, layer.heads, layer.head_dim).transpose(1, 2)
        k = k.view(b, seq, layer.kv_heads, layer.head_dim).transpose(1, 2)
        v = v.view(b, seq, layer.kv_heads, layer.head_dim).transpose(1, 2)
        layer.k_cache[rows, :, :seq].copy_(k)
        layer.v_cache[rows, :, :seq].copy_(v)
        rep = layer.heads // layer.kv_heads
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return layer.o_proj.seq(o.transpose(1, 2).reshape(b, seq, q_dim))

    # ----------------------------------------------------------------------------------------------- decode
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token to every sequence; returns the next-token logits (batch, vocab) in fp32."""
        if self._batch == 0:
            raise DecodeError("FastDecoder.step: call prefill() first")
        if tokens.dim() != 1 or tokens.shape[0] != self._batch:
            raise DecodeError(f"FastDecoder.step: expected tokens of shape ({self._batch},), got {tuple(tokens.shape)}")
        self._check_room(self._batch, 1)
        with torch.inference_mode():
            logits = self._step(tokens.to(self.device), self._position)
        self._position += 1
        return logits

    def _core_for(self, batch: int) -> Callable[[torch.Tensor, _MambaLayer], torch.Tensor]:
        return self._mamba_core_batched if batch >= _Linear._MANY_ROWS else self._mamba_core

    def _step(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        x = F.embedding(tokens, self.embedding)
        core = self._core_for(tokens.shape[0])
        for layer in self.layers:
            h = _rms(x, layer.norm)
            if isinstance(layer, _MambaLayer):
                x = x + layer.out_proj.step(core(layer.in_proj.step(h), layer))
            elif isinstance(layer, _AttentionLayer):
                x = x + self._attention_step(h, layer, pos)
            else:
                x = x + _mlp_step(h, layer)
        return self.lm_head.step(_rms(x, self.final_norm)).float()

    @staticmethod
    def _attention_step(h: torch.Tensor, layer: _AttentionLayer, pos: int) -> torch.Tensor:
        """Write this token's k/v at `pos`, attend over positions 0..pos (a view of the buffer), project out.

        GQA without repeating K/V: the heads/kv_heads queries of one KV head ride on SDPA's query-length axis; a
        single decode query sees every cached position, so no mask is needed.
        """
        q, k, v = _qkv(h, layer)
        b = q.shape[0]
        layer.k_cache[:b, :, pos].copy_(k)
        layer.v_cache[:b, :, pos].copy_(v)
        o = F.scaled_dot_product_attention(q, layer.k_cache[:b, :, : pos + 1], layer.v_cache[:b, :, : pos + 1])
        return layer.o_proj.step(o.reshape(b, -1))

    # ----------------------------------------------------------------------------------------------- profiling
    def step_breakdown(self, tokens: torch.Tensor) -> dict[str, float]:
        """`step` timed layer by layer: seconds spent in {mamba, attention, mlp, other}. Advances the state.

        Attention includes its projections and the SDPA over the cache: the only part that grows with context.
        """
        per_layer, other = self.step_layer_times(tokens)
        times = dict.fromkeys(("mamba", "attention", "mlp"), 0.0)
        for kind, seconds in zip(self.kinds, per_layer, strict=True):
            times[KIND_NAMES[kind]] += seconds
        return {**times, "other": other}

    def step_layer_times(self, tokens: torch.Tensor) -> tuple[list[float], float]:
        """`step` with a timer around every layer: (seconds per layer in model order, seconds outside the layers:
        embedding, final norm, lm_head). Advances the state like `step`. On CUDA every timer synchronises."""
        if self._batch == 0:
            raise DecodeError("FastDecoder.step_layer_times: call prefill() first")
        self._check_room(self._batch, 1)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        pos, per_layer, other, core = self._position, [], 0.0, self._core_for(self._batch)
        with torch.inference_mode():
            sync()
            t = time.perf_counter()
            x = F.embedding(tokens.to(self.device), self.embedding)
            for layer in self.layers:
                sync()
                t_layer = time.perf_counter()
                other += t_layer - t
                h = _rms(x, layer.norm)
                if isinstance(layer, _MambaLayer):
                    x = x + layer.out_proj.step(core(layer.in_proj.step(h), layer))
                elif isinstance(layer, _AttentionLayer):
                    x = x + self._attention_step(h, layer, pos)
                else:
                    x = x + _mlp_step(h, layer)
                sync()
                t = time.perf_counter()
                per_layer.append(t - t_layer)
            self.lm_head.step(_rms(x, self.final_norm)).float()
            sync()
            other += time.perf_counter() - t
        self._position += 1
        return per_layer, other


def decode_greedy(decoder: FastDecoder, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy continuation of equal-length prompts: returns (batch, seq + max_new_tokens) ids, prompt included."""
    if max_new_tokens < 0:
        raise DecodeError("decode_greedy: max_new_tokens must be >= 0")
    input_ids = input_ids.to(decoder.device)
    if max_new_tokens == 0:
        return input_ids.clone()
    if input_ids.shape[1] + max_new_tokens - 1 > decoder.max_len:
        raise DecodeError(
            f"decode_greedy: {input_ids.shape[1]} prompt + {max_new_tokens} new tokens would exceed "
            f"max_len={decoder.max_len}"
        )
    out = torch.empty(input_ids.shape[0], max_new_tokens, dtype=input_ids.dtype, device=decoder.device)
    logits = decoder.prefill(input_ids)
    for i in range(max_new_tokens):
        out[:, i] = logits.argmax(-1)
        if i + 1 < max_new_tokens:
            logits = decoder.step(out[:, i])
    return torch.cat([input_ids, out], dim=1)


def per_token_times(
    decoder: FastDecoder,
    positions: Sequence[int],
    steps: int = 16,
    breakdown: bool = True,
    batch: int = 1,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Per-token decode time at each context length: prefill a random prompt of that length, then time `steps`.

    Returns one dict per position: `position`, `step_ms` (median `step`) and, with `breakdown`, the median
    per-kind times `mamba_ms`, `attention_ms`, `mlp_ms`, `other_ms` of `step_breakdown` (the same step with a
    timer around every layer). Decode cost does not depend on token values, so random prompts measure the same
    thing as real ones.
    """
    gen = torch.Generator().manual_seed(seed)
    vocab = decoder.vocab_size
    sync = torch.cuda.synchronize if decoder.device.type == "cuda" else (lambda: None)
    rows = []
    for pos in positions:
        need = pos + 2 * steps + 2
        if need > decoder.max_len:
            raise DecodeError(f"per_token_times: position {pos} needs max_len >= {need} (have {decoder.max_len})")
        prompt = torch.randint(0, vocab, (batch, pos), generator=gen)
        logits = decoder.prefill(prompt)
        token = logits.argmax(-1)
        decoder.step(token)  # warm-up (and compile, the first time)
        times = []
        for _ in range(steps):
            sync()
            t = time.perf_counter()
            logits = decoder.step(token)
            sync()
            times.append(time.perf_counter() - t)
        row = {"position": float(pos), "step_ms": 1e3 * sorted(times)[len(times) // 2]}
        if breakdown:
            parts = [decoder.step_breakdown(token) for _ in range(steps)]
            for name in parts[0]:
                row[f"{name}_ms"] = 1e3 * sorted(p[name] for p in parts)[len(parts) // 2]
        rows.append(row)
    return rows
