"""Pruning surgery: (parent checkpoint, target shape, importance) -> a smaller HF NemotronH checkpoint.

Every tensor is sliced consistently with the units kept:
- hidden channels: the embedding and LM-head columns, every RMSNorm weight, the input columns of Mamba `in_proj`,
  attention q/k/v and MLP `up_proj`, and the output rows of Mamba `out_proj`, attention `o_proj` and `down_proj`;
- FFN neurons (per MLP layer): `up_proj` rows and `down_proj` columns;
- Mamba heads (per Mamba layer, the same number kept in every group): `in_proj` rows of the z (gate), x and dt
  segments (B and C belong to the groups and stay whole), the x channels of the depthwise conv (weights and bias),
  `A_log`, `D`, `dt_bias`, the gated-norm weight and the input columns of `out_proj`;
- layers: the blocks not kept disappear and the child's pattern is the parent's with their symbols removed.
`in_proj` rows are laid out [z: heads*head_dim | x: heads*head_dim | B: groups*state | C: groups*state | dt: heads];
the conv runs over x|B|C.

RMSNorm divides by the root mean square over its width (the hidden size, or a Mamba group of heads), so removing
channels changes the denominator even when they carry nothing. With `rescale_norms` (the default) each norm weight
is multiplied by sqrt(parent width / child width), which makes pruning units that carry no activation exact up to
the norm's epsilon, and brings the output closer whenever the pruned units carry less than their share of the
energy (the point of pruning by importance).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from compress.importance import ImportanceScores, group_ranking
from model.configs import ATTENTION, MAMBA, MLP, HybridConfig, drop_layers
from nano2.errors import Nano2Error

LAYER_KEY = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


class ShapeError(Nano2Error):
    """A target shape the parent cannot be pruned to."""


class PruneShape(BaseModel):
    """What a child keeps; a field left out keeps the parent's value."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    depth: int | None = Field(None, gt=0, description="layers kept; the rest follow the importance removal order")
    drop_layers: list[int] | None = Field(None, description="explicit parent layer indices to remove")
    hidden: int | None = Field(None, gt=0)
    ffn: int | None = Field(None, gt=0)
    mamba_heads: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _depth_agrees(self) -> PruneShape:
        if self.drop_layers is not None and len(set(self.drop_layers)) != len(self.drop_layers):
            raise ValueError("drop_layers: indices repeat")
        return self


def parse_shape_flags(items: list[str]) -> PruneShape:
    """`depth=21 hidden=112 ffn=384 mamba_heads=8 drop_layers=19,20,21,24` -> PruneShape."""
    data: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not value.strip():
            raise ShapeError(f"--shape {item!r}: expected key=value (keys: {', '.join(PruneShape.model_fields)})")
        if key == "drop_layers":
            try:
                data[key] = [int(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise ShapeError(f"--shape {item!r}: expected comma-separated layer indices") from None
        else:
            data[key] = value.strip()
    try:
        return PruneShape.model_validate(data)
    except ValidationError as exc:
        from nano2.config import describe_validation_error

        field, message = describe_validation_error(exc, PruneShape)[0]
        raise ShapeError(f"--shape {field}: {message}") from None


def load_shape(source: str | Path | list[str]) -> PruneShape:
    """A shape from a YAML file or from key=value items."""
    if isinstance(source, list):
        if len(source) == 1 and source[0].endswith((".yaml", ".yml")):
            source = source[0]
        else:
            return parse_shape_flags(source)
    from nano2.config import load_yaml_model

    return load_yaml_model(source, PruneShape)


def resolve_drops(parent: HybridConfig, shape: PruneShape, scores: ImportanceScores | None) -> list[int]:
    """The parent layers the child loses: explicit, or the first of the importance removal order."""
    n = parent.num_layers
    if shape.drop_layers is not None:
        bad = [i for i in shape.drop_layers if not 0 <= i < n]
        if bad:
            raise ShapeError(f"drop_layers: layer {bad[0]} is outside the parent's 0..{n - 1}")
        if shape.depth is not None and n - len(shape.drop_layers) != shape.depth:
            raise ShapeError(
                f"depth {shape.depth} disagrees with drop_layers: {n} - {len(shape.drop_layers)} layers "
                f"= {n - len(shape.drop_layers)}"
            )
        drops = sorted(shape.drop_layers)
    elif shape.depth is None or shape.depth == n:
        drops = []
    else:
        if shape.depth > n:
            raise ShapeError(f"depth {shape.depth} is larger than the parent's {n} layers: pruning only removes")
        need = n - shape.depth
        order = scores.depth_removal_order if scores is not None else []
        if len(order) < need:
            raise ShapeError(
                f"depth {shape.depth} removes {need} layers, but the importance scores rank only {len(order)} "
                "(give drop_layers, or compute importance with a larger depth_max_remove)"
            )
        drops = sorted(order[:need])
    if len(drops) >= n:
        raise ShapeError("the child would have no layers left")
    return drops


def check_widths(parent: HybridConfig, shape: PruneShape) -> None:
    """Bad widths as one clear message each."""
    for field, value, have in (
        ("hidden", shape.hidden, parent.hidden_size),
        ("ffn", shape.ffn, parent.intermediate_size),
        ("mamba_heads", shape.mamba_heads, parent.mamba_num_heads),
    ):
        if value is not None and value > have:
            raise ShapeError(f"{field} {value} is larger than the parent's {have}: pruning can only remove units")
    if shape.mamba_heads is not None and shape.mamba_heads % parent.n_groups:
        raise ShapeError(
            f"mamba_heads {shape.mamba_heads} is not a multiple of n_groups {parent.n_groups}: heads are pruned "
            "within each group (the heads of a group share B and C), so every group must keep the same number"
        )
    # NemotronH's attention has an explicit head_dim (q/k/v map hidden -> heads x head_dim), so the hidden size is
    # free of attention geometry; the Mamba geometry is heads x mamba_head_dim and does not involve it either.


def child_config(parent: HybridConfig, shape: PruneShape, drops: list[int]) -> HybridConfig:
    """The child's config: the parent's with the pattern, widths and name of the shape."""
    check_widths(parent, shape)
    pattern = drop_layers(parent.pattern, drops) if drops else parent.pattern
    hidden = shape.hidden or parent.hidden_size
    ffn = shape.ffn or parent.intermediate_size
    heads = shape.mamba_heads or parent.mamba_num_heads
    name = shape.name or f"{parent.name}-pruned-d{len(pattern)}-h{hidden}-f{ffn}-m{heads}"
    return parent.with_(
        name=name,
        pattern=pattern,
        hidden_size=hidden,
        intermediate_size=ffn,
        mamba_num_heads=heads,
        description=f"pruned from {parent.name}",
    )


@dataclass
class PruneSelection:
    """The parent units a child keeps (indices ascending, parent numbering)."""

    keep_layers: list[int]
    hidden: torch.Tensor
    ffn: dict[int, torch.Tensor]
    mamba_heads: dict[int, torch.Tensor]

    def summary(self) -> dict[str, Any]:
        return {
            "keep_layers": self.keep_layers,
            "hidden_kept": int(self.hidden.numel()),
            "mamba_heads": {str(k): v.tolist() for k, v in self.mamba_heads.items()},
        }


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores, ascending (ties go to the lower index)."""
    order = torch.argsort(scores.float(), descending=True, stable=True)
    return torch.sort(order[:k]).values


def _needs_scores(what: str) -> ShapeError:
    return ShapeError(
        f"pruning {what} needs importance scores (`nano2 compress importance` writes them; pass --scores DIR)"
    )


def balanced_heads(head_scores: torch.Tensor, n_groups: int, keep: int) -> torch.Tensor:
    """The `keep` heads to keep, `keep / n_groups` of the best in every group, ascending."""
    ranking = group_ranking(head_scores, n_groups)
    return torch.sort(ranking[:, : keep // n_groups].reshape(-1)).values


def select_units(
    parent: HybridConfig, shape: PruneShape, scores: ImportanceScores | None = None
) -> tuple[HybridConfig, PruneSelection]:
    """The child config and the units it keeps, from the shape and (for anything narrowed) the scores."""
    if scores is not None:
        scores.check_parent(parent)
    drops = resolve_drops(parent, shape, scores)
    child = child_config(parent, shape, drops)
    keep = [i for i in range(parent.num_layers) if i not in set(drops)]
    if child.hidden_size < parent.hidden_size:
        if scores is None:
            raise _needs_scores("the hidden size")
        hidden = _top(scores.hidden, child.hidden_size)
    else:
        hidden = torch.arange(parent.hidden_size)
    ffn: dict[int, torch.Tensor] = {}
    mamba: dict[int, torch.Tensor] = {}
    for layer in keep:
        symbol = parent.pattern[layer]
        if symbol == MLP:
            if child.intermediate_size == parent.intermediate_size:
                ffn[layer] = torch.arange(parent.intermediate_size)
            elif scores is None or layer not in scores.ffn:
                raise _needs_scores(f"FFN neurons (layer {layer})")
            else:
                ffn[layer] = _top(scores.ffn[layer], child.intermediate_size)
        elif symbol == MAMBA:
            if child.mamba_num_heads == parent.mamba_num_heads:
                mamba[layer] = torch.arange(parent.mamba_num_heads)
            elif scores is None or layer not in scores.mamba_heads:
                raise _needs_scores(f"Mamba heads (layer {layer})")
            else:
                mamba[layer] = balanced_heads(scores.mamba_heads[layer], parent.n_groups, child.mamba_num_heads)
    return child, PruneSelection(keep, hidden, ffn, mamba)


def _head_channels(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    return (heads.unsqueeze(1) * head_dim + torch.arange(head_dim)).reshape(-1)


def _scaled(weight: torch.Tensor, factor: float) -> torch.Tensor:
    if factor == 1.0:
        return weight.clone()
    return (weight.float() * factor).to(weight.dtype)


def prune_state_dict(
    get: Callable[[str], torch.Tensor],
    keys: list[str],
    parent: HybridConfig,
    child: HybridConfig,
    selection: PruneSelection,
    rescale_norms: bool = True,
) -> dict[str, torch.Tensor]:
    """The child's state dict; `get(key)` returns a parent tensor (lazily, so a big parent is never all in memory)."""
    h = selection.hidden
    hidden_factor = math.sqrt(parent.hidden_size / child.hidden_size) if rescale_norms else 1.0
    group_factor = math.sqrt(parent.mamba_num_heads / child.mamba_num_heads) if rescale_norms else 1.0
    new_index = {old: new for new, old in enumerate(selection.keep_layers)}
    d_inner, gn = parent.mamba_d_inner, parent.n_groups * parent.ssm_state_size
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        match = LAYER_KEY.match(key)
        if match is None:
            if key in ("model.embeddings.weight", "lm_head.weight"):
                out[key] = get(key)[:, h].clone()
            elif key == "model.norm_f.weight":
                out[key] = _scaled(get(key)[h], hidden_factor)
            else:
                raise Nano2Error(f"pruning: parameter {key!r} is not part of a NemotronH model this code knows")
            continue
        layer, rest = int(match.group(1)), match.group(2)
        if layer not in new_index:
            continue
        new_key = f"model.layers.{new_index[layer]}.{rest}"
        symbol = parent.pattern[layer]
        w = get(key)
        if rest == "norm.weight":
            out[new_key] = _scaled(w[h], hidden_factor)
        elif symbol == MLP and rest == "mixer.up_proj.weight":
            out[new_key] = w[selection.ffn[layer]][:, h].clone()
        elif symbol == MLP and rest == "mixer.down_proj.weight":
            out[new_key] = w[h][:, selection.ffn[layer]].clone()
        elif symbol == ATTENTION and rest in ("mixer.q_proj.weight", "mixer.k_proj.weight", "mixer.v_proj.weight"):
            out[new_key] = w[:, h].clone()
        elif symbol == ATTENTION and rest == "mixer.o_proj.weight":
            out[new_key] = w[h].clone()
        elif symbol == MAMBA:
            heads = selection.mamba_heads[layer]
            channels = _head_channels(heads, parent.mamba_head_dim)
            group_rows = torch.arange(gn)
            if rest == "mixer.in_proj.weight":
                rows = torch.cat(
                    [
                        channels,
                        d_inner + channels,
                        2 * d_inner + group_rows,
                        2 * d_inner + gn + group_rows,
                        2 * d_inner + 2 * gn + heads,
                    ]
                )
                out[new_key] = w[rows][:, h].clone()
            elif rest in ("mixer.conv1d.weight", "mixer.conv1d.bias"):
                out[new_key] = w[torch.cat([channels, d_inner + torch.arange(2 * gn)])].clone()
            elif rest in ("mixer.A_log", "mixer.D", "mixer.dt_bias"):
                out[new_key] = w[heads].clone()
            elif rest == "mixer.norm.weight":
                out[new_key] = _scaled(w[channels], group_factor)
            elif rest == "mixer.out_proj.weight":
                out[new_key] = w[h][:, channels].clone()
            else:
                raise Nano2Error(f"pruning: Mamba parameter {key!r} is not one this code knows how to slice")
        else:
            raise Nano2Error(f"pruning: parameter {key!r} of a {symbol!r} layer is not one this code knows")
    return out


def build_child(child: HybridConfig, state: dict[str, torch.Tensor]):
    """A NemotronHForCausalLM for `child` holding `state` (built on the meta device: no wasted initialisation)."""
    from transformers import NemotronHForCausalLM

    from model.configs import to_hf_config
    from model.io import quiet_transformers

    quiet_transformers()
    with torch.device("meta"):
        model = NemotronHForCausalLM(to_hf_config(child))
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise Nano2Error(f"pruned state does not fit {child.name}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


def prune_model(
    model: Any,
    parent: HybridConfig,
    shape: PruneShape,
    scores: ImportanceScores | None = None,
    rescale_norms: bool = True,
) -> tuple[Any, HybridConfig, PruneSelection]:
    """Prune an in-memory parent; returns the child model, its config and what was kept."""
    child, selection = select_units(parent, shape, scores)
    state = model.state_dict()
    child_state = prune_state_dict(state.__getitem__, list(state), parent, child, selection, rescale_norms)
    return build_child(child, child_state), child, selection


class _LazyCheckpoint:
    """Tensors of a safetensors checkpoint (one file or shards), read one at a time.

    NemotronH checkpoints on disk name the backbone `backbone.` (NVIDIA's layout, which transformers writes and
    renames on load); names here use the in-memory `model.` prefix.
    """

    def __init__(self, directory: Path):
        from safetensors import safe_open

        self._where: dict[str, tuple[Any, str]] = {}
        for file in sorted(directory.glob("*.safetensors")):
            handle = safe_open(str(file), framework="pt")
            for key in handle.keys():  # noqa: SIM118 (a safetensors handle is not iterable)
                name = "model." + key.removeprefix("backbone.") if key.startswith("backbone.") else key
                self._where[name] = (handle, key)
        self.keys = list(self._where)

    def __call__(self, name: str) -> torch.Tensor:
        handle, key = self._where[name]
        return handle.get_tensor(key)


def prune_checkpoint(
    checkpoint: str | Path,
    shape: PruneShape,
    out_dir: str | Path,
    scores_dir: str | Path | None = None,
    rescale_norms: bool = True,
) -> tuple[Path, HybridConfig]:
    """Prune a checkpoint directory to `shape` and save the child (safetensors + manifest + tokenizer files)."""
    from compress.importance import load_scores
    from model.io import TOKENIZER_FILES, check_checkpoint_dir, load_config, save_checkpoint
    from nano2.manifest import input_ref

    checkpoint = check_checkpoint_dir(checkpoint)
    parent = load_config(checkpoint)
    scores = load_scores(scores_dir) if scores_dir is not None else None
    child, selection = select_units(parent, shape, scores)
    lazy = _LazyCheckpoint(checkpoint)
    model = build_child(child, prune_state_dict(lazy, lazy.keys, parent, child, selection, rescale_norms))
    has_tokenizer = any((checkpoint / f).exists() for f in TOKENIZER_FILES)
    # save_checkpoint records the tokenizer's directory (here the parent checkpoint) as an input itself
    inputs = [] if has_tokenizer else [input_ref(checkpoint)]
    inputs += [input_ref(scores_dir)] if scores_dir is not None else []
    out = save_checkpoint(
        model,
        out_dir,
        child,
        tokenizer_dir=checkpoint if has_tokenizer else None,
        inputs=inputs,
        extra={
            "pruned_from": parent.model_dump(mode="json"),
            "shape": shape.model_dump(mode="json"),
            "rescale_norms": rescale_norms,
            "selection": selection.summary(),
        },
    )
    return out, child
