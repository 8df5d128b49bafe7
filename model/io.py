"""Build, save and load HF-format NemotronH checkpoints (config.json + safetensors; the format vLLM also loads).

Initialisation follows Megatron-LM / Nemotron-H as far as transformers' modules allow:
- every linear weight and the embedding ~ N(0, 0.02) (`init_method_std`);
- the output projections that write into the residual stream (Mamba `out_proj`, attention `o_proj`, MLP
  `down_proj`) ~ N(0, 0.02 / sqrt(2 x num_layers)) (Megatron's scaled init for output layers);
- Mamba: A = -exp(A_log) with A ~ U[1, 16] (Megatron's `A_init_range`), D = 1, dt_bias = softplus^-1(dt) with
  dt ~ logU[time_step_min, time_step_max] floored at time_step_floor (as transformers and mamba-ssm do), the
  depthwise conv with PyTorch's default (kaiming-uniform weights and bias), RMSNorm weights = 1, no linear biases.
Loading uses safetensors only: a directory holding pickle weights (.bin, .pt, .pth, .ckpt, .pkl) is refused.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from model.configs import HybridConfig, from_hf_config, to_hf_config
from nano2.errors import Nano2Error
from nano2.manifest import InputRef, OutputStats, current_command, input_ref, write_manifest

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
A_INIT_RANGE = (1.0, 16.0)
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise Nano2Error(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}") from None


@torch.no_grad()
def megatron_init_(model: torch.nn.Module, cfg: HybridConfig, generator: torch.Generator) -> None:
    """Re-initialise a NemotronHForCausalLM in place with the Megatron/Nemotron-H scheme (see module docstring)."""
    std = cfg.initializer_range
    out_std = std / math.sqrt(2 * cfg.num_layers)
    hf = model.config
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear):
            module.weight.normal_(
                0.0, out_std if leaf in ("out_proj", "o_proj", "down_proj") else std, generator=generator
            )
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, torch.nn.Embedding):
            module.weight.normal_(0.0, std, generator=generator)
        elif isinstance(module, torch.nn.Conv1d):
            fan_in = module.weight.shape[1] * module.weight.shape[2]
            bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) and the default bias bound coincide here
            module.weight.uniform_(-bound, bound, generator=generator)
            if module.bias is not None:
                module.bias.uniform_(-bound, bound, generator=generator)
        elif hasattr(module, "A_log") and hasattr(module, "dt_bias"):
            heads = module.A_log.shape[0]
            low, high = A_INIT_RANGE
            a = torch.empty(heads).uniform_(low, high, generator=generator)
            module.A_log.copy_(torch.log(a))
            module.D.fill_(1.0)
            log_min, log_max = math.log(hf.time_step_min), math.log(hf.time_step_max)
            dt = torch.exp(torch.rand(heads, generator=generator) * (log_max - log_min) + log_min)
            dt = dt.clamp(min=hf.time_step_floor)
            module.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        elif leaf in ("norm", "norm_f") and hasattr(module, "weight"):
            module.weight.fill_(1.0)


def build_model(cfg: HybridConfig, seed: int = 0, dtype: str = "fp32"):
    """A freshly initialised `NemotronHForCausalLM` for `cfg`, deterministic in `seed`."""
    from transformers import NemotronHForCausalLM

    torch.manual_seed(seed)
    model = NemotronHForCausalLM(to_hf_config(cfg))
    megatron_init_(model, cfg, torch.Generator().manual_seed(seed))
    return model.to(torch_dtype(dtype)).eval()


def save_checkpoint(
    model,
    out_dir: str | Path,
    cfg: HybridConfig | None = None,
    tokenizer_dir: str | Path | None = None,
    inputs: list[InputRef] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files) and a `checkpoint` manifest."""
    quiet_transformers()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        if stale.suffix in PICKLE_SUFFIXES or stale.name.endswith(".safetensors"):
            stale.unlink()
    model.save_pretrained(out, safe_serialization=True)
    inputs = list(inputs or [])
    if tokenizer_dir is not None:
        tok = Path(tokenizer_dir)
        files = [tok] if tok.is_file() else [tok / f for f in TOKENIZER_FILES if (tok / f).exists()]
        if not files:
            raise Nano2Error(f"{tok}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
        for f in files:
            shutil.copy2(f, out / f.name)
        inputs.append(input_ref(tok))
    cfg = cfg or from_hf_config(model.config, name=out.name)
    n_params = sum(p.numel() for p in model.parameters())
    write_manifest(
        out,
        kind="checkpoint",
        name=cfg.name,
        command=current_command(),
        config=cfg,
        inputs=inputs,
        stats=OutputStats(bytes=sum(f.stat().st_size for f in out.glob("*.safetensors"))),
        extra={"parameters": n_params, "dtype": str(next(model.parameters()).dtype), **(extra or {})},
    )
    return out


def check_checkpoint_dir(path: str | Path) -> Path:
    """A directory with config.json and safetensors weights, and no pickle files; else one clear error."""
    path = Path(path)
    if not path.is_dir():
        raise Nano2Error(f"{path}: checkpoint directory not found")
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise Nano2Error(
            f"{path}: refusing to load pickle weights ({', '.join(pickles)}): pickle can run arbitrary code; "
            "convert the checkpoint to safetensors"
        )
    if not (path / "config.json").exists():
        raise Nano2Error(f"{path}: no config.json (not a Hugging Face checkpoint)")
    if not any(path.glob("*.safetensors")):
        raise Nano2Error(f"{path}: no .safetensors weights")
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    if model_type != "nemotron_h":
        raise Nano2Error(f"{path}: config.json has model_type {model_type!r}, expected 'nemotron_h'")
    return path


def quiet_transformers() -> None:
    """No progress bars or kernel-fallback notices from transformers in our commands and tests."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_checkpoint(path: str | Path, dtype: str = "fp32", device: str = "cpu"):
    """Load a checkpoint with `AutoModelForCausalLM` (safetensors only, no remote code)."""
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    path = check_checkpoint_dir(path)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch_dtype(dtype), use_safetensors=True, trust_remote_code=False
    )
    return model.to(device).eval()


def load_config(name_or_path: str | Path) -> HybridConfig:
    """A named config, or the config of a checkpoint directory."""
    from model.configs import NAMED_CONFIGS, get_config

    if str(name_or_path) in NAMED_CONFIGS:
        return get_config(str(name_or_path))
    path = Path(name_or_path)
    if path.is_dir() and (path / "config.json").exists():
        from transformers import AutoConfig

        return from_hf_config(AutoConfig.from_pretrained(path, trust_remote_code=False), name=path.name)
    return get_config(str(name_or_path))  # raises the "unknown config" error
