"""How the pretraining loop runs on many ranks and in FP8: the process group, DDP/FSDP2 wrapping, FP8 layers.

Kept apart from the loop so that `train/loop.py` reads as one step after another; everything here is a no-op (or the
model itself) in a single CPU process. Under torchrun, gradients are reduced over ranks on the last micro-batch of a
step only, and the full (unsharded) model and optimizer state dicts are what checkpoints hold, so a run resumes under
another data-parallel layout.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from nano2.errors import Nano2Error
from train.checkpoint import rng_state
from train.config import TrainConfig


@dataclass
class Dist:
    """This process's place in the data-parallel group (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False
    fsdp: bool = False  # sharded with FSDP2 (else replicated with DDP, when there is more than one rank)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean over ranks of a small CPU tensor (moved to the device for NCCL, which cannot reduce CPU tensors)."""
        if self.enabled:
            values = values.to(self.device)
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
            values = values.cpu() / self.world_size
        return values

    def gather_rng(self) -> list[dict[str, torch.Tensor]]:
        """Every rank's RNG state, in rank order (a collective when distributed)."""
        mine = rng_state()
        if not self.enabled:
            return [mine]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, mine)
        return out


def setup_distributed(cfg: TrainConfig) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1; choose the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise Nano2Error("device: cuda was asked for but no GPU is visible")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world == 1:
        return Dist(device=device)
    dist = torch.distributed
    owns = not dist.is_initialized()
    if owns:
        backend = cfg.parallel.backend if cfg.parallel.backend != "auto" else ("nccl" if use_cuda else "gloo")
        dist.init_process_group(backend=backend)
    fsdp = cfg.parallel.strategy == "fsdp2"
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device, owns, fsdp)


def transformer_blocks(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The repeated blocks (transformers' `_no_split_modules`), in order: FSDP units and FP8 layer boundaries."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ in names]


def apply_fp8(model: torch.nn.Module, cfg: TrainConfig, device: torch.device, console: Any) -> bool:
    """Swap Linear layers for torchao Float8Linear, keeping the first/last blocks and lm_head in bf16 (GPU only)."""
    fp8 = cfg.precision.fp8
    if not fp8.enabled:
        return False
    if device.type != "cuda":
        console.print("[yellow]fp8[/]: skipped on CPU (torchao's float8 matmuls need an FP8-capable GPU)")
        return False
    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError:
        raise Nano2Error("precision.fp8 needs torchao on the GPU machine: pip install 'nano2-recipe[gpu]'") from None
    blocks = [name for name, _ in transformer_blocks(model)]
    keep = blocks[: fp8.bf16_first_layers] + (
        blocks[len(blocks) - fp8.bf16_last_layers :] if fp8.bf16_last_layers else []
    )

    def use_fp8(module: torch.nn.Module, fqn: str) -> bool:
        if not isinstance(module, torch.nn.Linear) or fqn.endswith("lm_head"):
            return False
        if any(fqn == k or fqn.startswith(k + ".") for k in keep):
            return False
        return module.in_features % 16 == 0 and module.out_features % 16 == 0

    convert_to_float8_training(model, config=Float8LinearConfig.from_recipe_name(fp8.recipe), module_filter_fn=use_fp8)
    console.print(f"fp8 ({fp8.recipe}): on, bf16 kept in {', '.join(keep) or 'no blocks'} and lm_head")
    return True


def wrap_model(model: torch.nn.Module, dist: Dist) -> torch.nn.Module:
    """The module the loop calls: DDP replica, FSDP2-sharded model (block by block), or the model itself."""
    if not dist.enabled:
        return model
    if not dist.fsdp:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    from torch.distributed.fsdp import fully_shard

    for _, block in transformer_blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def gradient_sync(wrapped: torch.nn.Module, dist: Dist, last_micro_batch: bool) -> contextlib.AbstractContextManager:
    """Where backward runs: gradients are reduced over ranks on a step's last micro-batch only."""
    if dist.enabled and dist.fsdp:
        wrapped.set_requires_gradient_sync(last_micro_batch)
    elif dist.enabled and not last_micro_batch:
        return wrapped.no_sync()
    return contextlib.nullcontext()


def clip_gradients(params: Iterable[torch.Tensor], max_norm: float) -> float:
    """Clip to `max_norm` and return the global gradient norm (assembled from the shards under FSDP2)."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


def full_state_dicts(
    wrapped: torch.nn.Module, dist: Dist, optimizer: torch.optim.Optimizer | None = None
) -> tuple[dict | None, dict | None]:
    """Full model (FSDP2 only: otherwise the model itself is saved) and optimizer state dicts; a collective."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=dist.enabled)
    model_state = get_model_state_dict(wrapped, options=options) if dist.enabled and dist.fsdp else None
    optim_state = get_optimizer_state_dict(wrapped, optimizer, options=options) if optimizer is not None else None
    return model_state, optim_state


def load_optimizer_state(wrapped: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a full (unsharded) optimizer state dict into a possibly sharded optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(wrapped, optimizer, state, options=StateDictOptions(full_state_dict=True))


def unsharded(base: torch.nn.Module, full_state: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    """A plain copy of the model to save from its full state dict; the model itself when it is not sharded."""
    if full_state is None:
        return base
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        copy = AutoModelForCausalLM.from_config(base.config)
    copy.load_state_dict(full_state, assign=True, strict=True)
    return copy
