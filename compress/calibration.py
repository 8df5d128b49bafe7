"""Calibration token batches for importance estimation and proxy scores.

A calibration set is a LongTensor [samples, seq_len] of token ids, drawn deterministically (seeded) from one of:
- a token file: `.safetensors` (tensor `input_ids`, or its only tensor) or `.npy` (read without pickle), 2-D;
- a directory of Megatron `.bin/.idx` shards (read with nano2/contracts/megatron.py, the recipe's one reader):
  windows of `seq_len` tokens at random offsets in the concatenated token stream, as Megatron's GPT dataset crosses
  document boundaries;
- a mixture spec (YAML): the spec's sources are compiled against `data_root`, and each source with local shards
  gets a share of the samples equal to its share of the plan's tokens (largest-remainder rounding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nano2.contracts.megatron import find_shards
from nano2.errors import Nano2Error

TOKEN_FILE_SUFFIXES = (".safetensors", ".npy")
SPEC_SUFFIXES = (".yaml", ".yml")


def windows_from_shards(directory: str | Path, samples: int, seq_len: int, seed: int) -> torch.Tensor:
    """`samples` windows of `seq_len` tokens from the shards under `directory`, chosen with a seeded RNG."""
    directory = Path(directory)
    shards = find_shards(directory)
    if not shards:
        raise Nano2Error(f"{directory}: no Megatron .bin/.idx shards found")
    streams = [s.data for s in shards]
    usable = [s for s in streams if len(s) >= seq_len]
    if not usable:
        raise Nano2Error(f"{directory}: no shard holds {seq_len} tokens (longest has {max(len(s) for s in streams)})")
    sizes = np.array([len(s) - seq_len + 1 for s in usable], dtype=np.int64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, sizes.sum(), size=samples)
    bounds = np.cumsum(sizes)
    rows = []
    for flat in picks:
        shard = int(np.searchsorted(bounds, flat, side="right"))
        start = int(flat - (bounds[shard - 1] if shard else 0))
        rows.append(np.asarray(usable[shard][start : start + seq_len], dtype=np.int64))
    return torch.from_numpy(np.stack(rows))


def read_token_file(path: str | Path) -> torch.Tensor:
    """A 2-D tensor of token ids from .safetensors (`input_ids` or the only tensor) or .npy (no pickle)."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise Nano2Error(f"{path}: cannot read as a plain .npy array ({exc})") from None
        tokens = torch.from_numpy(np.asarray(array))
    elif path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if "input_ids" in tensors:
            tokens = tensors["input_ids"]
        elif len(tensors) == 1:
            tokens = next(iter(tensors.values()))
        else:
            raise Nano2Error(f"{path}: expected a tensor named input_ids (found {', '.join(sorted(tensors))})")
    else:
        raise Nano2Error(f"{path}: unsupported token file; expected {' or '.join(TOKEN_FILE_SUFFIXES)}")
    if tokens.ndim != 2 or tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise Nano2Error(
            f"{path}: expected a 2-D integer tensor of token ids, got {tuple(tokens.shape)} {tokens.dtype}"
        )
    return tokens.long()


def windows_from_spec(
    spec_path: str | Path,
    data_root: str | Path,
    samples: int,
    seq_len: int,
    seed: int,
    sources: dict[str, str] | None = None,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Samples from a mixture spec's sources in proportion to their planned tokens; also the per-source count.

    A source's tokens are read under `data_root` at its spec path, or at `sources[name]` (needed for sources whose
    token counts the spec declares), the same rule as train/'s `data.sources`.
    """
    from mixtures import compile_spec_file
    from mixtures.compiler import allocate_largest_remainder
    from mixtures.sources import resolve_source_path

    sources = sources or {}
    spec, plan = compile_spec_file(spec_path, data_root)
    unknown = sorted(set(sources) - set(spec.sources))
    if unknown:
        raise Nano2Error(f"calibration sources: {spec_path} has no source {unknown[0]!r}")
    planned = {s.name: s.planned_tokens for s in plan.sources if s.planned_tokens > 0}
    missing = [name for name in planned if spec.sources[name].path is None and name not in sources]
    if missing:
        raise Nano2Error(
            f"{spec_path}: sources {', '.join(missing)} declare their tokens instead of naming local data; "
            "map them to token directories (calibration.sources) or calibrate with shards or a token file"
        )
    counts = allocate_largest_remainder({k: float(v) for k, v in planned.items()}, samples)
    parts = []
    for i, (name, count) in enumerate(sorted(counts.items())):
        if count:
            directory = resolve_source_path(data_root, sources.get(name) or spec.sources[name].path or "")
            parts.append(windows_from_shards(directory, count, seq_len, seed + i))
    tokens = torch.cat(parts)
    order = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed))
    return tokens[order], counts


def load_calibration(
    source: str | Path | torch.Tensor,
    samples: int,
    seq_len: int,
    seed: int = 0,
    data_root: str | Path = ".",
    vocab_size: int | None = None,
    sources: dict[str, str] | None = None,
) -> torch.Tensor:
    """A [samples, seq_len] LongTensor of token ids from a tensor, token file, shard directory or mixture spec."""
    if samples <= 0 or seq_len <= 1:
        raise Nano2Error(f"calibration needs samples > 0 and seq_len > 1 (got {samples} x {seq_len})")
    if isinstance(source, torch.Tensor):
        tokens = source.long()
        where = "calibration tensor"
    else:
        path = Path(source)
        where = str(path)
        if path.is_dir():
            tokens = windows_from_shards(path, samples, seq_len, seed)
        elif path.suffix in SPEC_SUFFIXES:
            tokens, _ = windows_from_spec(path, data_root, samples, seq_len, seed, sources)
        elif path.is_file():
            tokens = read_token_file(path)
        else:
            raise Nano2Error(f"{path}: calibration source not found (a token file, shard directory or mixture spec)")
    if tokens.ndim != 2:
        raise Nano2Error(f"{where}: expected [samples, seq_len] token ids, got shape {tuple(tokens.shape)}")
    if tokens.shape[0] < samples or tokens.shape[1] < seq_len:
        raise Nano2Error(
            f"{where}: holds {tokens.shape[0]} x {tokens.shape[1]} tokens, "
            f"fewer than the {samples} x {seq_len} asked for"
        )
    tokens = tokens[:samples, :seq_len].contiguous()
    if tokens.numel() and (int(tokens.min()) < 0 or (vocab_size is not None and int(tokens.max()) >= vocab_size)):
        raise Nano2Error(f"{where}: token ids outside the model's vocabulary [0, {vocab_size})")
    return tokens
