"""A decode engine for NemotronH checkpoints with preallocated state and no per-layer cache machinery.

Why: transformers' incremental decode walks a generic cache object per layer and runs the Mamba step as ~30 small
ops with reshapes and dtype round trips, so on a CPU the Mamba-2 step costs more than the attention it replaces
until the context is very long. Here every piece of decode state is allocated once (per Mamba layer the conv
window and the fp32 SSM state; per attention layer a KV buffer of `max_len` positions), the weights are arranged
once, and the step is a few fused graph calls:

* the layers between two attention cores form one *segment* (norms, Mamba steps, MLPs, the q/k/v projection of
  the attention that ends it, or the final norm and lm_head); segments have static shapes, so they are compiled
  with `torch.compile` when that pays (or run eagerly);
* the attention core runs eagerly between segments: write k/v at `position`, then `scaled_dot_product_attention`
  of the query over the valid prefix of the buffer (a view: no copy, no mask, no work that grows with anything
  but the attention itself). GQA folds the query heads of one KV head into the query-length axis, so K/V are
  never repeated.

Numerics follow transformers' full (chunked) forward, which is the reference: dt is clamped to
`time_step_min` as the chunk scan does, the gated RMSNorm multiplies by silu(gate) in fp32 *before* normalising
over groups of d_inner / n_groups, the SSM state and all Mamba arithmetic are fp32, the block RMSNorm multiplies
its weight in fp32 and casts back, residuals stay in the model dtype and logits are returned in fp32.
"""

from __future__ import annotations

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


@dataclass
class _Norm:
    weight: torch.Tensor  # fp32
    eps: float


@dataclass
class _MambaLayer:
    norm: _Norm
    in_proj: torch.Tensor  # (d_inner + conv_dim + heads, hidden), model dtype
    conv_w: torch.Tensor  # (conv_dim, kernel), fp32
    conv_b: torch.Tensor  # (conv_dim,), fp32
    dt_bias: torch.Tensor  # (heads,), fp32
    A: torch.Tensor  # -exp(A_log), (heads,), fp32
    D: torch.Tensor  # (heads,), fp32
    gnorm_w: torch.Tensor  # (d_inner,), fp32
    gnorm_eps: float
    out_proj: torch.Tensor  # (hidden, d_inner), model dtype
    d_inner: int
    conv_dim: int
    heads: int
    head_dim: int
    groups: int
    state: int
    kernel: int
    dt_min: float
    conv_state: torch.Tensor = field(repr=False)  # (max_batch, conv_dim, kernel), model dtype
    ssm_state: torch.Tensor = field(repr=False)  # (max_batch, heads, head_dim, state), fp32


@dataclass
class _AttentionLayer:
    norm: _Norm
    qkv: torch.Tensor  # (q + 2 kv, hidden): q, k and v projections fused
    o_proj: torch.Tensor
    heads: int
    kv_heads: int
    head_dim: int
    k_cache: torch.Tensor = field(repr=False)  # (max_batch, kv_heads, max_len, head_dim), model dtype
    v_cache: torch.Tensor = field(repr=False)


@dataclass
class _MLPLayer:
    norm: _Norm
    up: torch.Tensor
    down: torch.Tensor


_Layer = _MambaLayer | _AttentionLayer | _MLPLayer


def _rms(x: torch.Tensor, norm: _Norm) -> torch.Tensor:
    """NemotronHRMSNorm: normalise and multiply by the weight in fp32, then cast back to the input dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.eps)
    return (norm.weight * h).to(x.dtype)


def _gated_rms(y: torch.Tensor, gate: torch.Tensor, layer: _MambaLayer) -> torch.Tensor:
    """NemotronHRMSNormGated with norm_before_gate=False: y * silu(gate) in fp32, then RMS over d_inner/n_groups."""
    h = y * F.silu(gate.float())
    *prefix, last = h.shape
    g = h.view(*prefix, layer.groups, last // layer.groups)
    g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + layer.gnorm_eps)
    return layer.gnorm_w * g.view(*prefix, last)


def _mamba_step(h: torch.Tensor, layer: _MambaLayer) -> torch.Tensor:
    """One token of a Mamba-2 mixer for every sequence; updates the layer's conv window and SSM state in place."""
    b = h.shape[0]
    zxbcdt = F.linear(h, layer.in_proj)
    z, xbc, dt = zxbcdt.split([layer.d_inner, layer.conv_dim, layer.heads], dim=-1)
    conv_state = layer.conv_state[:b]
    conv_state.copy_(torch.cat([conv_state[:, :, 1:], xbc.unsqueeze(-1).to(conv_state.dtype)], dim=-1))
    xbc = F.silu((conv_state.float() * layer.conv_w).sum(-1) + layer.conv_b)
    x, B, C = xbc.split([layer.d_inner, layer.groups * layer.state, layer.groups * layer.state], dim=-1)
    dt = F.softplus(dt.float() + layer.dt_bias).clamp(min=layer.dt_min)  # (b, heads)
    rep = layer.heads // layer.groups
    B = B.view(b, layer.groups, 1, layer.state).expand(b, layer.groups, rep, layer.state).reshape(b, layer.heads, 1, -1)
    C = C.view(b, layer.groups, 1, layer.state).expand(b, layer.groups, rep, layer.state).reshape(b, layer.heads, -1, 1)
    x = x.view(b, layer.heads, layer.head_dim)
    ssm = layer.ssm_state[:b]
    new = ssm * torch.exp(dt * layer.A)[:, :, None, None] + (dt.unsqueeze(-1) * x).unsqueeze(-1) * B
    ssm.copy_(new)
    y = torch.matmul(new, C).squeeze(-1) + layer.D[:, None] * x  # (b, heads, head_dim)
    y = _gated_rms(y.reshape(b, layer.d_inner), z, layer)
    return F.linear(y.to(h.dtype), layer.out_proj)


def _mlp(h: torch.Tensor, layer: _MLPLayer) -> torch.Tensor:
    return F.linear(torch.relu(F.linear(h, layer.up)).square(), layer.down)


def _qkv(h: torch.Tensor, layer: _AttentionLayer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q as (b, kv_heads, heads/kv_heads, head_dim) so GQA needs no repeat; k, v as (b, kv_heads, head_dim)."""
    b = h.shape[0]
    q_dim, kv_dim = layer.heads * layer.head_dim, layer.kv_heads * layer.head_dim
    q, k, v = F.linear(h, layer.qkv).split([q_dim, kv_dim, kv_dim], dim=-1)
    rep = layer.heads // layer.kv_heads
    return (
        q.view(b, layer.kv_heads, rep, layer.head_dim),
        k.view(b, layer.kv_heads, layer.head_dim),
        v.view(b, layer.kv_heads, layer.head_dim),
    )


class _Segment(torch.nn.Module):
    """The layers between two attention cores, as one static-shape function of (residual stream, attention output).

    Segment 0 starts from token ids (embedding); every later one starts by adding the o_proj of the attention
    output to the residual. A segment ends with the q/k/v of the next attention layer, or with the logits.
    """

    def __init__(
        self,
        layers: list[_Layer],
        head_attention: _AttentionLayer | None,
        tail: _AttentionLayer | None,
        embedding: torch.Tensor | None,
        final: tuple[_Norm, torch.Tensor] | None,
    ):
        super().__init__()
        self.layers, self.head_attention, self.tail = layers, head_attention, tail
        self.embedding, self.final = embedding, final

    def forward(self, x: torch.Tensor, attn: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if self.embedding is not None:
            x = F.embedding(x, self.embedding)
        if self.head_attention is not None:
            x = x + F.linear(attn.reshape(x.shape[0], -1), self.head_attention.o_proj)
        for layer in self.layers:
            h = _rms(x, layer.norm)
            x = x + (_mamba_step(h, layer) if isinstance(layer, _MambaLayer) else _mlp(h, layer))
        if self.tail is not None:
            return (x, *_qkv(_rms(x, self.tail.norm), self.tail))
        norm, lm_head = self.final
        return (F.linear(_rms(x, norm), lm_head).float(),)


def _kind(layer: _Layer) -> str:
    if isinstance(layer, _MambaLayer):
        return MAMBA_KIND
    return ATTENTION_KIND if isinstance(layer, _AttentionLayer) else MLP_KIND


class FastDecoder:
    """Prefill once, then decode one token per sequence per `step()` from preallocated state.

    `compile`: True compiles each segment with `torch.compile` (static shapes; the first step of each batch size
    pays the compile), False runs the same code eagerly, None picks compile on CPU (where it wins; see the
    benchmark) and eager elsewhere. `prefill` starts a new sequence; `step` appends one token to every sequence.
    """

    def __init__(self, model: torch.nn.Module, max_batch: int = 1, max_len: int = 4096, compile: bool | None = None):
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
        self.compile = (self.device.type == "cpu") if compile is None else bool(compile)
        with torch.no_grad():
            self.layers = [self._arrange(block) for block in model.model.layers]
            self.embedding = model.model.embeddings.weight.detach()
            self.final_norm = _Norm(model.model.norm_f.weight.detach().float(), model.model.norm_f.variance_epsilon)
            self.lm_head = lm_head.detach()
        self.chunk_size = int(config.chunk_size)
        self._build_segments()
        self._position = 0
        self._batch = 0

    # ----------------------------------------------------------------------------------------------- setup
    def _arrange(self, block: torch.nn.Module) -> _Layer:
        """Copy one block's weights into the layout the step uses and allocate its decode state."""
        norm = _Norm(block.norm.weight.detach().float().clone(), block.norm.variance_epsilon)
        mixer, kind = block.mixer, block.block_type
        dev, dt = self.device, self.dtype
        if kind == MAMBA_KIND:
            conv_dim, kernel = mixer.conv_dim, mixer.conv_kernel_size
            conv_b = mixer.conv1d.bias if mixer.conv1d.bias is not None else torch.zeros(conv_dim, device=dev)
            return _MambaLayer(
                norm=norm,
                in_proj=mixer.in_proj.weight.detach(),
                conv_w=mixer.conv1d.weight.detach().float().reshape(conv_dim, kernel).clone(),
                conv_b=conv_b.detach().float().clone(),
                dt_bias=mixer.dt_bias.detach().float().clone(),
                A=-torch.exp(mixer.A_log.detach().float()),
                D=mixer.D.detach().float().clone(),
                gnorm_w=mixer.norm.weight.detach().float().clone(),
                gnorm_eps=mixer.norm.variance_epsilon,
                out_proj=mixer.out_proj.weight.detach(),
                d_inner=mixer.intermediate_size,
                conv_dim=conv_dim,
                heads=mixer.num_heads,
                head_dim=mixer.head_dim,
                groups=mixer.n_groups,
                state=mixer.ssm_state_size,
                kernel=kernel,
                dt_min=float(mixer.time_step_limit[0]),
                conv_state=torch.zeros(self.max_batch, conv_dim, kernel, device=dev, dtype=dt),
                ssm_state=torch.zeros(
                    self.max_batch, mixer.num_heads, mixer.head_dim, mixer.ssm_state_size, device=dev
                ),
            )
        if kind == ATTENTION_KIND:
            if mixer.q_proj.bias is not None or mixer.o_proj.bias is not None:
                raise DecodeError("FastDecoder: attention biases are not supported (Nano 2 has none)")
            kv_heads, head_dim = mixer.config.num_key_value_heads, mixer.head_dim
            if not math.isclose(mixer.scaling, head_dim**-0.5):
                raise DecodeError("FastDecoder: attention scaling other than head_dim**-0.5 is not supported")
            cache = (self.max_batch, kv_heads, self.max_len, head_dim)
            return _AttentionLayer(
                norm=norm,
                qkv=torch.cat([mixer.q_proj.weight, mixer.k_proj.weight, mixer.v_proj.weight]).detach(),
                o_proj=mixer.o_proj.weight.detach(),
                heads=mixer.config.num_attention_heads,
                kv_heads=kv_heads,
                head_dim=head_dim,
                k_cache=torch.zeros(cache, device=dev, dtype=dt),
                v_cache=torch.zeros(cache, device=dev, dtype=dt),
            )
        if mixer.up_proj.bias is not None or mixer.down_proj.bias is not None:
            raise DecodeError("FastDecoder: MLP biases are not supported (Nano 2 has none)")
        return _MLPLayer(norm=norm, up=mixer.up_proj.weight.detach(), down=mixer.down_proj.weight.detach())

    def _build_segments(self) -> None:
        self.attention = [layer for layer in self.layers if isinstance(layer, _AttentionLayer)]
        groups: list[list[_Layer]] = [[]]
        for layer in self.layers:
            if isinstance(layer, _AttentionLayer):
                groups.append([])
            else:
                groups[-1].append(layer)
        self.segments: list[_Segment] = []
        for i, group in enumerate(groups):
            last = i == len(groups) - 1
            self.segments.append(
                _Segment(
                    group,
                    head_attention=self.attention[i - 1] if i > 0 else None,
                    tail=None if last else self.attention[i],
                    embedding=self.embedding if i == 0 else None,
                    final=(self.final_norm, self.lm_head) if last else None,
                )
            )
        self._runners: list[Callable[..., tuple[torch.Tensor, ...]]] = [
            torch.compile(seg, dynamic=False, fullgraph=True) if self.compile else seg for seg in self.segments
        ]

    # ----------------------------------------------------------------------------------------------- state
    @property
    def position(self) -> int:
        """Tokens so far in every sequence (prompt plus generated)."""
        return self._position

    @property
    def batch(self) -> int:
        return self._batch

    def reset(self) -> None:
        """Forget the current sequences: zero every state buffer (so a later prefill starts from nothing)."""
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
    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Start new sequences from equal-length prompts (batch, seq); fills all state; returns last logits (batch, vocab).

        Runs the full forward with transformers' chunked Mamba-2 scan and causal SDPA (the same math as
        `model(input_ids)`), taking the final SSM states, the last conv window and the K/V of every position.
        """
        if input_ids.dim() != 2 or input_ids.shape[1] < 1:
            raise DecodeError("FastDecoder.prefill: expected input_ids of shape (batch, seq) with seq >= 1")
        self.reset()
        batch, seq = input_ids.shape
        self._check_room(batch, seq)
        with torch.inference_mode():
            x = F.embedding(input_ids.to(self.device), self.embedding)
            for layer in self.layers:
                h = _rms(x, layer.norm)
                if isinstance(layer, _MambaLayer):
                    x = x + self._mamba_prefill(h, layer)
                elif isinstance(layer, _AttentionLayer):
                    x = x + self._attention_prefill(h, layer)
                else:
                    x = x + _mlp(h, layer)
            logits = F.linear(_rms(x[:, -1], self.final_norm), self.lm_head).float()
        self._position, self._batch = seq, batch
        return logits

    def _mamba_prefill(self, h: torch.Tensor, layer: _MambaLayer) -> torch.Tensor:
        from transformers.models.nemotron_h import modeling_nemotron_h as hf

        b, seq, _ = h.shape
        z, xbc, dt = F.linear(h, layer.in_proj).split([layer.d_inner, layer.conv_dim, layer.heads], dim=-1)
        xbc_t = xbc.transpose(1, 2)  # (b, conv_dim, seq)
        window = F.pad(xbc_t, (max(layer.kernel - seq, 0), 0))[:, :, -layer.kernel :]
        layer.conv_state[:b].copy_(window)
        conv = F.conv1d(xbc_t.to(layer.conv_w.dtype), layer.conv_w.unsqueeze(1), layer.conv_b,
                        padding=layer.kernel - 1, groups=layer.conv_dim)[:, :, :seq]  # fmt: skip
        xbc = F.silu(conv).transpose(1, 2)
        x, B, C = xbc.split([layer.d_inner, layer.groups * layer.state, layer.groups * layer.state], dim=-1)
        scan = hf.mamba2_chunk_scan
        if self.device.type == "cpu":  # the plain-torch reference (no kernel-lookup warnings); on CUDA a kernel
            scan = getattr(scan, "__wrapped__", scan)
        y, final = scan(
            x.reshape(b, seq, layer.heads, layer.head_dim),
            dt,
            layer.A,
            B.reshape(b, seq, layer.groups, layer.state),
            C.reshape(b, seq, layer.groups, layer.state),
            chunk_size=self.chunk_size,
            D=layer.D,
            dt_bias=layer.dt_bias,
            dt_softplus=True,
            dt_limit=(layer.dt_min, float("inf")),
            return_final_states=True,
        )
        layer.ssm_state[:b].copy_(final)
        y = _gated_rms(y.reshape(b, seq, layer.d_inner).float(), z, layer)
        return F.linear(y.to(h.dtype), layer.out_proj)

    def _attention_prefill(self, h: torch.Tensor, layer: _AttentionLayer) -> torch.Tensor:
        b, seq, _ = h.shape
        q_dim, kv_dim = layer.heads * layer.head_dim, layer.kv_heads * layer.head_dim
        q, k, v = F.linear(h, layer.qkv).split([q_dim, kv_dim, kv_dim], dim=-1)
        q = q.view(b, seq, layer.heads, layer.head_dim).transpose(1, 2)
        k = k.view(b, seq, layer.kv_heads, layer.head_dim).transpose(1, 2)
        v = v.view(b, seq, layer.kv_heads, layer.head_dim).transpose(1, 2)
        layer.k_cache[:b, :, :seq].copy_(k)
        layer.v_cache[:b, :, :seq].copy_(v)
        rep = layer.heads // layer.kv_heads
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return F.linear(o.transpose(1, 2).reshape(b, seq, q_dim), layer.o_proj)

    # ----------------------------------------------------------------------------------------------- decode
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token to every sequence; returns the next-token logits (batch, vocab) in fp32."""
        if self._batch == 0:
            raise DecodeError("FastDecoder.step: call prefill() first")
        if tokens.dim() != 1 or tokens.shape[0] != self._batch:
            raise DecodeError(f"FastDecoder.step: expected tokens of shape ({self._batch},), got {tuple(tokens.shape)}")
        self._check_room(self._batch, 1)
        with torch.inference_mode():
            logits = self._step(tokens.to(self.device))
        self._position += 1
        return logits

    def _step(self, tokens: torch.Tensor) -> torch.Tensor:
        runners, attention, pos = self._runners, self.attention, self._position
        out = runners[0](tokens)
        for i, layer in enumerate(attention):
            out = runners[i + 1](out[0], self._attend(layer, out[1], out[2], out[3], pos))
        return out[0]

    @staticmethod
    def _attend(layer: _AttentionLayer, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: int) -> torch.Tensor:
        """Write this token's k/v at `pos` and attend over positions 0..pos; q is (b, kv_heads, rep, head_dim)."""
        b = q.shape[0]
        layer.k_cache[:b, :, pos].copy_(k)
        layer.v_cache[:b, :, pos].copy_(v)
        keys, values = layer.k_cache[:b, :, : pos + 1], layer.v_cache[:b, :, : pos + 1]
        return F.scaled_dot_product_attention(q, keys, values)

    # ----------------------------------------------------------------------------------------------- profiling
    def step_breakdown(self, tokens: torch.Tensor) -> dict[str, float]:
        """One eager step timed layer by layer: seconds spent in {mamba, attention, mlp, other}. Advances the state.

        The attention figure covers its projections and the SDPA over the cache; it is what grows with context.
        """
        if self._batch == 0:
            raise DecodeError("FastDecoder.step_breakdown: call prefill() first")
        self._check_room(self._batch, 1)
        times = dict.fromkeys(("mamba", "attention", "mlp", "other"), 0.0)
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        pos = self._position
        with torch.inference_mode():
            sync()
            t = time.perf_counter()
            x = F.embedding(tokens.to(self.device), self.embedding)
            for layer in self.layers:
                sync()
                t_layer = time.perf_counter()
                times["other"] += t_layer - t
                h = _rms(x, layer.norm)
                if isinstance(layer, _MambaLayer):
                    x = x + _mamba_step(h, layer)
                elif isinstance(layer, _AttentionLayer):
                    q, k, v = _qkv(h, layer)
                    o = self._attend(layer, q, k, v, pos)
                    x = x + F.linear(o.reshape(x.shape[0], -1), layer.o_proj)
                else:
                    x = x + _mlp(h, layer)
                sync()
                t = time.perf_counter()
                times[KIND_NAMES[_kind(layer)]] += t - t_layer
            F.linear(_rms(x, self.final_norm), self.lm_head).float()
            sync()
            times["other"] += time.perf_counter() - t
        self._position += 1
        return times


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
    seed: int = 0,
) -> list[dict[str, float]]:
    """Per-token decode time at each context length: prefill a random prompt of that length, then time `steps`.

    Returns one dict per position: `position`, `step_ms` (median fast-path step) and, with `breakdown`, the
    median eager per-kind times `mamba_ms`, `attention_ms`, `mlp_ms`, `other_ms` (from `step_breakdown`).
    Decode cost does not depend on token values, so random prompts measure the same thing as real ones.
    """
    gen = torch.Generator().manual_seed(seed)
    vocab = decoder.embedding.shape[0]
    sync = torch.cuda.synchronize if decoder.device.type == "cuda" else (lambda: None)
    rows = []
    for pos in positions:
        need = pos + 2 * steps + 2
        if need > decoder.max_len:
            raise DecodeError(f"per_token_times: position {pos} needs max_len >= {need} (have {decoder.max_len})")
        prompt = torch.randint(0, vocab, (decoder.batch or 1, pos), generator=gen)
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
