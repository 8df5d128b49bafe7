"""Linear merge of two checkpoints of the same architecture: merged = (1 - alpha) * A + alpha * B.

`alpha` is the weight of B. Nano 2 merged a reasoning-strong RL checkpoint (A) with a chat-strong one (B) as
(1 - alpha) * w_reasoning + alpha * w_chat and kept alpha ~ 0.5 (paper-facts §5): alpha 0 returns A exactly, alpha 1
returns B exactly (both copied bit for bit), anything between is computed in fp32 and cast back to the weights' dtype.

The merge works tensor by tensor from the safetensors files (never instantiating a model), so a 12B merge needs
memory for one shard, not two models. It refuses, with the reason, checkpoints whose architectures differ, whose
tensor names, shapes or dtypes differ, or whose tokenizers differ (interpolating weights that index different vocab
entries is meaningless). The output keeps A's file layout, config and tokenizer, and a `checkpoint` manifest lists
both inputs and alpha.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from nano2.errors import Nano2Error
from nano2.manifest import ArtifactKind, OutputStats, content_hash, current_command, input_ref, write_manifest

COPIED_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")
ARCHITECTURE_IGNORED = ("name", "description")


@dataclass(frozen=True)
class TensorInfo:
    file: str
    shape: tuple[int, ...]
    dtype: str


def tensor_index(checkpoint: Path) -> dict[str, TensorInfo]:
    """Every tensor name of a checkpoint with the file that holds it, its shape and dtype (headers only)."""
    from safetensors import safe_open

    index: dict[str, TensorInfo] = {}
    for path in sorted(checkpoint.glob("*.safetensors")):
        with safe_open(path, framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 (safe_open handles are not mappings)
                tensor_slice = fh.get_slice(name)
                if name in index:
                    raise Nano2Error(f"{checkpoint}: tensor {name} is stored twice ({index[name].file}, {path.name})")
                index[name] = TensorInfo(path.name, tuple(tensor_slice.get_shape()), tensor_slice.get_dtype())
    return index


def check_compatible(a: Path, b: Path) -> tuple[dict[str, TensorInfo], dict[str, TensorInfo]]:
    """Both checkpoints load, share the architecture, tokenizer, tensor names, shapes and dtypes; else one error."""
    from model.io import check_checkpoint_dir, load_config

    check_checkpoint_dir(a)
    check_checkpoint_dir(b)
    arch_a, arch_b = (load_config(p).model_dump(exclude=set(ARCHITECTURE_IGNORED)) for p in (a, b))
    differing = [k for k in arch_a if arch_a[k] != arch_b.get(k)]
    if differing:
        detail = "; ".join(f"{k}: {arch_a[k]!r} vs {arch_b.get(k)!r}" for k in differing[:4])
        raise Nano2Error(f"cannot merge {a} and {b}: different architectures ({detail})")
    tok_a, tok_b = a / "tokenizer.json", b / "tokenizer.json"
    if tok_a.is_file() and tok_b.is_file() and content_hash(tok_a) != content_hash(tok_b):
        raise Nano2Error(f"cannot merge {a} and {b}: their tokenizer.json files differ")
    index_a, index_b = tensor_index(a), tensor_index(b)
    only_a, only_b = sorted(set(index_a) - set(index_b)), sorted(set(index_b) - set(index_a))
    if only_a or only_b:
        raise Nano2Error(
            f"cannot merge {a} and {b}: different tensors (only in A: {', '.join(only_a[:3]) or '-'}; "
            f"only in B: {', '.join(only_b[:3]) or '-'})"
        )
    for name, info in index_a.items():
        other = index_b[name]
        if info.shape != other.shape:
            raise Nano2Error(f"cannot merge {a} and {b}: {name} has shape {info.shape} in A and {other.shape} in B")
        if info.dtype != other.dtype:
            raise Nano2Error(f"cannot merge {a} and {b}: {name} is {info.dtype} in A and {other.dtype} in B")
    return index_a, index_b


def interpolate(tensor_a: torch.Tensor, tensor_b: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) * A + alpha * B in fp32, cast back; the end points are the inputs themselves."""
    if alpha == 0.0:
        return tensor_a.clone()
    if alpha == 1.0:
        return tensor_b.clone()
    merged = (1.0 - alpha) * tensor_a.to(torch.float32) + alpha * tensor_b.to(torch.float32)
    return merged.to(tensor_a.dtype)


def merge_checkpoints(a: str | Path, b: str | Path, alpha: float, out: str | Path) -> Path:
    """Write the linear merge of checkpoints `a` and `b` (alpha = weight of b) to `out` with a manifest."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from model.io import TOKENIZER_FILES, load_config

    a, b, out = Path(a), Path(b), Path(out)
    if not 0.0 <= alpha <= 1.0:
        raise Nano2Error(f"--alpha must be in [0, 1] (the weight of B), got {alpha}")
    if out.resolve() in (a.resolve(), b.resolve()):
        raise Nano2Error(f"{out}: the output must not be one of the inputs")
    index_a, index_b = check_compatible(a, b)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.safetensors"):
        stale.unlink()

    with ExitStack() as stack:
        handles_b = {
            f: stack.enter_context(safe_open(b / f, framework="pt")) for f in {i.file for i in index_b.values()}
        }
        for file_name in sorted({info.file for info in index_a.values()}):
            merged: dict[str, torch.Tensor] = {}
            with safe_open(a / file_name, framework="pt") as fa:
                for name in fa.keys():  # noqa: SIM118 (safe_open handles are not mappings)
                    tensor_b = handles_b[index_b[name].file].get_tensor(name)
                    merged[name] = interpolate(fa.get_tensor(name), tensor_b, alpha)
            save_file(merged, str(out / file_name), metadata={"format": "pt"})

    for name in (*COPIED_FILES, *TOKENIZER_FILES):
        if (a / name).is_file():
            shutil.copy2(a / name, out / name)
    n_params = sum(int(torch.Size(info.shape).numel()) for info in index_a.values())
    dtypes = sorted({info.dtype for info in index_a.values()})
    write_manifest(
        out,
        kind=ArtifactKind.CHECKPOINT,
        name=out.name,
        command=current_command(),
        config=load_config(a).with_(name=out.name),
        inputs=[input_ref(a), input_ref(b)],
        stats=OutputStats(bytes=sum(f.stat().st_size for f in out.glob("*.safetensors"))),
        extra={
            "merge": {"method": "linear", "formula": "(1 - alpha) * A + alpha * B", "alpha": alpha,
                      "a": str(a), "b": str(b)},
            "parameters": n_params,
            "dtype": ",".join(dtypes),
        },
    )  # fmt: skip
    return out
