"""Minitron importance for the hybrid: activation scores for widths, iterative layer removal for depth.

Width scores are single-shot and forward-only (hooks over calibration batches). For an activation a[b, t, c] a
unit's score is Minitron's best aggregation (2407.14679): the mean over the sequence of |a|, then the L2 norm
over samples, i.e. sqrt(sum_b (mean_t |a[b, t, c]|)^2).
- FFN neurons: the squared-ReLU output (the input of `down_proj`), per MLP layer; each layer keeps its own.
- Embedding channels: the output of every RMSNorm over the hidden dimension (each block's pre-norm and the final
  norm), one score per channel summed over those norms: the residual stream is shared, so one ranking for all.
- Mamba heads: the gated-norm output (the input of `out_proj`); a head's score is the L2 norm of its channels'
  scores. Heads are ranked within each of the `n_groups` groups because a group's heads share B and C.
- Attention heads: the same on the input of `o_proj` (reported; Nano 2 keeps all of them).
Depth (paper §4.2 / Minitron): remove one layer at a time, measure the MSE of the logits against the full model,
drop the layer whose removal hurts least, repeat with the survivors. The removal order says which layers a child of
any depth drops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from model.configs import ATTENTION, MAMBA, MLP, HybridConfig
from nano2.errors import Nano2Error
from nano2.manifest import ArtifactKind

SCORES_FILE = "importance.safetensors"
DEPTH_PLOT = "depth_importance.png"


class ImportanceSettings(BaseModel):
    """How much calibration data and depth search an importance run uses."""

    model_config = ConfigDict(extra="forbid")
    samples: int = Field(1024, gt=0, description="calibration sequences for the width scores (paper: ~1024)")
    seq_len: int = Field(4096, gt=1)
    batch_size: int = Field(8, gt=0)
    depth_samples: int = Field(64, ge=0, description="sequences (a prefix of the calibration set) for depth ranking")
    depth_max_remove: int = Field(10, ge=0, description="layers removed one by one (paper: 6-10 of 62)")
    seed: int = 0


@dataclass
class ImportanceScores:
    """Scores of a parent's units; keys are parent layer indices."""

    pattern: str
    n_groups: int
    hidden: torch.Tensor
    ffn: dict[int, torch.Tensor] = field(default_factory=dict)
    mamba_heads: dict[int, torch.Tensor] = field(default_factory=dict)
    attention_heads: dict[int, torch.Tensor] = field(default_factory=dict)
    depth_single_mse: torch.Tensor | None = None  # [num_layers]: logit MSE of removing each layer alone
    depth_removal_order: list[int] = field(default_factory=list)
    depth_removal_mse: list[float] = field(default_factory=list)  # cumulative MSE after each removal

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"hidden": self.hidden}
        for prefix, scores in (
            ("ffn", self.ffn),
            ("mamba_heads", self.mamba_heads),
            ("attention", self.attention_heads),
        ):
            out.update({f"{prefix}.{layer}": t for layer, t in scores.items()})
        if self.depth_single_mse is not None:
            out["depth.single_mse"] = self.depth_single_mse
        if self.depth_removal_order:
            out["depth.removal_order"] = torch.tensor(self.depth_removal_order, dtype=torch.int64)
            out["depth.removal_mse"] = torch.tensor(self.depth_removal_mse, dtype=torch.float64)
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], pattern: str, n_groups: int) -> ImportanceScores:
        def by_layer(prefix: str) -> dict[int, torch.Tensor]:
            return {int(k.split(".", 1)[1]): v for k, v in tensors.items() if k.startswith(prefix + ".")}

        order = tensors.get("depth.removal_order")
        mse = tensors.get("depth.removal_mse")
        return cls(
            pattern=pattern,
            n_groups=n_groups,
            hidden=tensors["hidden"],
            ffn=by_layer("ffn"),
            mamba_heads=by_layer("mamba_heads"),
            attention_heads=by_layer("attention"),
            depth_single_mse=tensors.get("depth.single_mse"),
            depth_removal_order=[] if order is None else [int(i) for i in order],
            depth_removal_mse=[] if mse is None else [float(x) for x in mse],
        )

    def check_parent(self, cfg: HybridConfig, where: str = "importance scores") -> None:
        """Scores computed on another architecture would silently prune the wrong units."""
        if self.pattern != cfg.pattern or self.hidden.numel() != cfg.hidden_size or self.n_groups != cfg.n_groups:
            raise Nano2Error(
                f"{where} were computed for pattern {self.pattern!r} (hidden {self.hidden.numel()}), "
                f"not for this parent ({cfg.pattern!r}, hidden {cfg.hidden_size})"
            )


def group_ranking(head_scores: torch.Tensor, n_groups: int) -> torch.Tensor:
    """[n_groups, heads_per_group] head indices, each row sorted from most to least important within its group."""
    heads = head_scores.numel()
    if heads % n_groups:
        raise Nano2Error(f"{heads} Mamba heads cannot be split into {n_groups} groups")
    per_group = heads // n_groups
    grouped = head_scores.reshape(n_groups, per_group)
    order = torch.argsort(grouped, dim=1, descending=True, stable=True)
    return order + torch.arange(n_groups).unsqueeze(1) * per_group


class _ActivationScore:
    """Running sum over samples of (mean over sequence of |a|)^2, per channel."""

    def __init__(self) -> None:
        self.sum_sq: torch.Tensor | None = None

    def add(self, activation: torch.Tensor) -> None:
        per_sample = activation.detach().float().abs().mean(dim=1)  # [batch, channels]
        sq = per_sample.pow(2).sum(dim=0)
        self.sum_sq = sq if self.sum_sq is None else self.sum_sq + sq

    def result(self) -> torch.Tensor:
        if self.sum_sq is None:
            raise Nano2Error("no calibration batch reached this layer")
        return self.sum_sq.sqrt().cpu()


def backbone_layers(model: Any) -> torch.nn.ModuleList:
    return model.model.layers


@contextlib.contextmanager
def layers_removed(model: Any, indices: list[int] | set[int]) -> Iterator[None]:
    """Run the model without some blocks (a residual block removed is the identity), restoring them afterwards."""
    backbone = model.model
    original = backbone.layers
    drop = set(indices)
    backbone.layers = torch.nn.ModuleList([layer for i, layer in enumerate(original) if i not in drop])
    try:
        yield
    finally:
        backbone.layers = original


def _batches(tokens: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return [tokens[i : i + batch_size] for i in range(0, len(tokens), batch_size)]


@torch.no_grad()
def width_scores(
    model: Any, cfg: HybridConfig, tokens: torch.Tensor, batch_size: int, progress: Any = None
) -> ImportanceScores:
    """FFN, embedding-channel, Mamba-head and attention-head scores from hooks over the calibration tokens."""
    device = next(model.parameters()).device
    layers = backbone_layers(model)
    norms: dict[str, _ActivationScore] = {}
    ffn: dict[int, _ActivationScore] = {}
    mamba: dict[int, _ActivationScore] = {}
    attention: dict[int, _ActivationScore] = {}
    handles = []

    def output_hook(acc: _ActivationScore):
        return lambda module, args, out: acc.add(out)

    def input_hook(acc: _ActivationScore):
        return lambda module, args: acc.add(args[0])

    for i, (symbol, layer) in enumerate(zip(cfg.pattern, layers, strict=True)):
        norms[f"layer{i}"] = _ActivationScore()
        handles.append(layer.norm.register_forward_hook(output_hook(norms[f"layer{i}"])))
        if symbol == MLP:
            ffn[i] = _ActivationScore()
            handles.append(layer.mixer.down_proj.register_forward_pre_hook(input_hook(ffn[i])))
        elif symbol == MAMBA:
            mamba[i] = _ActivationScore()
            handles.append(layer.mixer.out_proj.register_forward_pre_hook(input_hook(mamba[i])))
        elif symbol == ATTENTION:
            attention[i] = _ActivationScore()
            handles.append(layer.mixer.o_proj.register_forward_pre_hook(input_hook(attention[i])))
    norms["final"] = _ActivationScore()
    handles.append(model.model.norm_f.register_forward_hook(output_hook(norms["final"])))
    batches = _batches(tokens, batch_size)
    task = progress.add_task("width scores", total=len(batches)) if progress is not None else None
    try:
        for batch in batches:
            model(input_ids=batch.to(device), use_cache=False)
            if progress is not None:
                progress.advance(task)
    finally:
        for handle in handles:
            handle.remove()
    hidden = torch.stack([acc.result() for acc in norms.values()]).sum(dim=0)

    def per_head(acc: _ActivationScore, heads: int, head_dim: int) -> torch.Tensor:
        return acc.result().reshape(heads, head_dim).norm(dim=1)

    return ImportanceScores(
        pattern=cfg.pattern,
        n_groups=cfg.n_groups,
        hidden=hidden,
        ffn={i: acc.result() for i, acc in ffn.items()},
        mamba_heads={i: per_head(acc, cfg.mamba_num_heads, cfg.mamba_head_dim) for i, acc in mamba.items()},
        attention_heads={i: per_head(acc, cfg.num_attention_heads, cfg.head_dim) for i, acc in attention.items()},
    )


@torch.no_grad()
def rank_depth(
    model: Any, tokens: torch.Tensor, batch_size: int, max_remove: int, progress: Any = None
) -> tuple[torch.Tensor, list[int], list[float]]:
    """Iterative single-layer removal by logit MSE against the full model.

    Returns the MSE of removing each layer alone, the removal order and the MSE after each removal.
    """
    device = next(model.parameters()).device
    num_layers = len(backbone_layers(model))
    if max_remove >= num_layers:
        raise Nano2Error(f"cannot remove {max_remove} of {num_layers} layers")
    batches = _batches(tokens, batch_size)
    removed: list[int] = []
    removal_mse: list[float] = []
    single = torch.zeros(num_layers, dtype=torch.float64)
    steps = max(max_remove, 1)  # one round is always run: it gives every layer's single-removal MSE
    total = sum(num_layers - k for k in range(steps)) * len(batches)
    task = progress.add_task("depth ranking", total=total) if progress is not None else None
    for step in range(steps):
        candidates = [i for i in range(num_layers) if i not in removed]
        sums = torch.zeros(len(candidates), dtype=torch.float64)
        for batch in batches:
            batch = batch.to(device)
            reference = model(input_ids=batch, use_cache=False).logits.float()
            for j, layer in enumerate(candidates):
                with layers_removed(model, [*removed, layer]):
                    logits = model(input_ids=batch, use_cache=False).logits.float()
                sums[j] += (logits - reference).pow(2).mean().item() * len(batch)
                if progress is not None:
                    progress.advance(task)
        mse = sums / len(tokens)
        if step == 0:
            single[candidates] = mse
        if step < max_remove:
            best = int(torch.argmin(mse))
            removed.append(candidates[best])
            removal_mse.append(float(mse[best]))
    return single, removed, removal_mse


def compute_importance(
    model: Any,
    cfg: HybridConfig,
    tokens: torch.Tensor,
    settings: ImportanceSettings,
    progress: Any = None,
) -> ImportanceScores:
    """Width scores over all calibration tokens, then the depth ranking over the first `depth_samples`."""
    model.eval()
    scores = width_scores(model, cfg, tokens, settings.batch_size, progress)
    if settings.depth_samples:
        depth_tokens = tokens[: settings.depth_samples]
        single, order, mse = rank_depth(model, depth_tokens, settings.batch_size, settings.depth_max_remove, progress)
        scores.depth_single_mse, scores.depth_removal_order, scores.depth_removal_mse = single, order, mse
    return scores


def save_scores(
    scores: ImportanceScores,
    out_dir: str | Path,
    cfg: HybridConfig,
    settings: ImportanceSettings,
    inputs: list[Any],
    tokens: int,
) -> Path:
    """importance.safetensors + a depth plot + a manifest (kind "importance")."""
    from safetensors.torch import save_file

    from nano2.manifest import OutputStats, current_command, write_manifest

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(scores.tensors(), str(out / SCORES_FILE), metadata={"pattern": cfg.pattern})
    if scores.depth_single_mse is not None:
        plot_depth(scores, out / DEPTH_PLOT)
    write_manifest(
        out,
        kind=ArtifactKind.IMPORTANCE,
        name=f"{cfg.name}-importance",
        command=current_command(),
        config=settings,
        inputs=inputs,
        stats=OutputStats(documents=settings.samples, tokens=tokens),
        extra={
            "parent": cfg.model_dump(mode="json"),
            "aggregation": {"sequence": "mean of |activation|", "batch": "L2"},
            "depth_removal_order": scores.depth_removal_order,
            "depth_removal_mse": scores.depth_removal_mse,
            "mamba_head_ranking_within_groups": {
                str(layer): group_ranking(s, scores.n_groups).tolist() for layer, s in scores.mamba_heads.items()
            },
        },
    )
    return out


def load_scores(path: str | Path) -> ImportanceScores:
    """Scores written by `save_scores` (a directory with a manifest of kind "importance")."""
    from safetensors.torch import load_file

    from nano2.manifest import read_manifest

    directory = Path(path)
    manifest = read_manifest(directory)
    if manifest.kind != ArtifactKind.IMPORTANCE:
        raise Nano2Error(f"{directory}: manifest kind is '{manifest.kind}', expected 'importance'")
    file = directory / SCORES_FILE
    if not file.exists():
        raise Nano2Error(f"{directory}: no {SCORES_FILE}")
    parent = manifest.extra.get("parent") or {}
    if "pattern" not in parent or "n_groups" not in parent:
        raise Nano2Error(f"{directory}/manifest.json: extra.parent lacks the parent's pattern and n_groups")
    return ImportanceScores.from_tensors(load_file(str(file)), parent["pattern"], int(parent["n_groups"]))


def plot_depth(scores: ImportanceScores, out: str | Path) -> Path:
    """Bar chart of each layer's single-removal logit MSE, coloured by layer kind, removed layers outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert scores.depth_single_mse is not None
    colours = {MAMBA: "tab:blue", ATTENTION: "tab:red", MLP: "tab:green"}
    values = scores.depth_single_mse.tolist()
    fig, ax = plt.subplots(figsize=(max(6, len(values) * 0.22), 3.5))
    bars = ax.bar(range(len(values)), values, color=[colours[c] for c in scores.pattern])
    for rank, layer in enumerate(scores.depth_removal_order):
        bars[layer].set_edgecolor("black")
        bars[layer].set_linewidth(1.5)
        ax.annotate(str(rank + 1), (layer, values[layer]), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("layer (blue Mamba, red attention, green MLP; numbers = removal order)")
    ax.set_ylabel("logit MSE when removed alone")
    ax.set_title("depth importance")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)
