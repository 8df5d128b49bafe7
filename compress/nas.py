"""Architecture search under a memory budget: the analogue of the paper's Tables 9 and 10.

Every point of the search space (depth x hidden x FFN x Mamba heads) becomes a child config whose parameters and
inference memory at the target context come from model/size.py. A candidate is feasible when its memory fits
the budget and its parameters are within the band around the target. Which layers a depth drops comes from the
measured depth ranking (importance), or, with no parent to measure, from the config's `drop_layers` (with
`--no-train` at full scale: the paper's 9B for 56 layers).

With a parent checkpoint the search ranks as the paper did: depth first (each depth pruned at full width and
scored), then the feasible widths at the best depth. The score is a proxy (the pruned child's next-token loss on
held-out tokens, lower is better; the KL to the parent is reported too) or, with `scoring.method: distill`, the
same loss after a short distillation of each of the top-k proxy candidates.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.config import CompressConfig, SearchSpace, ShapePoint
from compress.importance import ImportanceScores
from compress.prune import PruneShape, ShapeError, check_widths, child_config
from model.configs import HybridConfig
from model.size import GIB, get_gpu, inference_memory, total_params
from nano2.errors import ConfigError, Nano2Error
from nano2.manifest import ArtifactKind

TABLE_CSV = "candidates.csv"
TABLE_JSON = "candidates.json"
PLOT = "candidates.png"
WINNER = "winner.yaml"


@dataclass
class Candidate:
    depth: int
    hidden: int
    ffn: int
    mamba_heads: int
    drops: list[int]
    pattern: str
    params: int
    memory_gib: float
    fits: bool
    in_band: bool
    stage: str = ""
    proxy_loss: float | None = None
    proxy_kl: float | None = None
    distill_loss: float | None = None
    rank: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return self.fits and self.in_band

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.depth, self.hidden, self.ffn, self.mamba_heads)

    @property
    def score(self) -> float | None:
        """What ranks candidates: the distilled loss when there is one, else the proxy loss."""
        return self.distill_loss if self.distill_loss is not None else self.proxy_loss

    def shape(self, name: str | None = None) -> PruneShape:
        return PruneShape(
            name=name, drop_layers=self.drops, hidden=self.hidden, ffn=self.ffn, mamba_heads=self.mamba_heads
        )

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["drops"] = " ".join(map(str, self.drops))
        out["notes"] = "; ".join(self.notes)
        out["feasible"] = self.feasible
        return out


def depth_drops(
    parent: HybridConfig, space: SearchSpace, scores: ImportanceScores | None, where: str = "search"
) -> dict[int, list[int]]:
    """For every depth, the parent layers it drops: measured removal order first, else the config's drop_layers."""
    n = parent.num_layers
    out: dict[int, list[int]] = {}
    order = scores.depth_removal_order if scores is not None else []
    for depth in space.depth:
        need = n - depth
        if need < 0:
            raise ConfigError(where, "search.depth", f"depth {depth} is larger than the parent's {n} layers")
        if need == 0:
            out[depth] = []
        elif len(order) >= need:
            out[depth] = sorted(order[:need])
        elif depth in space.drop_layers:
            drops = space.drop_layers[depth]
            if len(drops) != need or len(set(drops)) != need or any(not 0 <= i < n for i in drops):
                raise ConfigError(
                    where, f"search.drop_layers.{depth}", f"expected {need} distinct layer indices in 0..{n - 1}"
                )
            out[depth] = sorted(drops)
        else:
            measured = f"the depth ranking covers {len(order)} removals" if scores is not None else "no depth ranking"
            raise ConfigError(
                where,
                "search.drop_layers",
                f"depth {depth} removes {need} layers but there is {measured} and no drop_layers entry for {depth}",
            )
    return out


def make_candidate(
    parent: HybridConfig, space: SearchSpace, depth: int, drops: list[int], hidden: int, ffn: int, heads: int
) -> Candidate:
    """One child shape with its parameters, memory at the budget's context and feasibility."""
    shape = PruneShape(drop_layers=drops, hidden=hidden, ffn=ffn, mamba_heads=heads)
    child = child_config(parent, shape, drops)
    memory = inference_memory(child, space.budget.context, space.budget.batch, space.budget.dtype)
    params = total_params(child)
    low, high = band(space)
    return Candidate(
        depth=depth,
        hidden=hidden,
        ffn=ffn,
        mamba_heads=heads,
        drops=drops,
        pattern=child.pattern,
        params=params,
        memory_gib=memory.total / GIB,
        fits=memory.total <= get_gpu(space.budget.gpu).budget_bytes,
        in_band=low <= params <= high,
    )


def enumerate_candidates(
    parent: HybridConfig, space: SearchSpace, drops: dict[int, list[int]], where: str = "search"
) -> list[Candidate]:
    """Every point of the space (depth x hidden x FFN x Mamba heads) as a candidate."""
    axes = space.axes()
    for axis in ("hidden", "ffn", "mamba_heads"):
        for value in axes[axis]:
            try:
                check_widths(parent, PruneShape(**{axis: value}))
            except ShapeError as exc:
                raise ConfigError(where, f"search.{axis}", str(exc)) from None
    return [
        make_candidate(parent, space, depth, drops[depth], hidden, ffn, heads)
        for depth in axes["depth"]
        for hidden in axes["hidden"]
        for ffn in axes["ffn"]
        for heads in axes["mamba_heads"]
    ]


def neighbours(
    space: SearchSpace, reference: ShapePoint, fits: Any = None
) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The reference and, along each axis and direction, the grid points walked until the first that does not fit.

    `fits(key) -> bool` stops each walk; without it only the adjacent points are listed. The point after the
    reference where the memory budget breaks is what shows how much room the reference leaves.
    """
    axes = space.axes()
    point = reference.model_dump()
    for axis, values in axes.items():
        if point[axis] not in values:
            raise Nano2Error(f"search.reference.{axis}: {point[axis]} is not in the search space ({values})")
    order = ("depth", "hidden", "ffn", "mamba_heads")

    def key(p: dict[str, int]) -> tuple[int, int, int, int]:
        return tuple(p[a] for a in order)  # type: ignore[return-value]

    out = [("reference", key(point))]
    for axis in order:
        values = axes[axis]
        i = values.index(point[axis])
        for sign, label in ((-1, "-"), (1, "+")):
            j = i + sign
            while 0 <= j < len(values):
                moved = key(dict(point, **{axis: values[j]}))
                out.append((f"{axis} {label}{abs(j - i)}", moved))
                if fits is None or not fits(moved):
                    break
                j += sign
    return out


def band(space: SearchSpace) -> tuple[float, float]:
    return space.target_params * (1 - space.params_tolerance), space.target_params * (1 + space.params_tolerance)


def winner(candidates: list[Candidate]) -> Candidate | None:
    ranked = [c for c in candidates if c.rank is not None]
    return min(ranked, key=lambda c: c.rank) if ranked else None


def save_table(
    candidates: list[Candidate],
    out_dir: Path,
    cfg: CompressConfig,
    config_path: str | Path,
    inputs: list[Any],
    extra: dict[str, Any],
) -> Path:
    """candidates.csv / .json, a params-vs-memory plot and a manifest (kind "nas")."""
    from nano2.manifest import OutputStats, current_command, write_manifest

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [c.row() for c in candidates]
    with open(out_dir / TABLE_CSV, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / TABLE_JSON).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    plot_candidates(candidates, cfg.search, out_dir / PLOT)
    best = winner(candidates)
    if best is not None:
        import yaml

        shape = best.shape(name=f"{cfg.name}-winner").model_dump(mode="json")
        (out_dir / WINNER).write_text(yaml.safe_dump(shape, sort_keys=False), encoding="utf-8")
    write_manifest(
        out_dir,
        kind=ArtifactKind.NAS,
        name=cfg.name,
        command=current_command(),
        config=cfg,
        config_path=str(config_path),
        inputs=inputs,
        stats=OutputStats(documents=len(candidates)),
        extra={
            "feasible": sum(c.feasible for c in candidates),
            "fits": sum(c.fits for c in candidates),
            "winner": None if best is None else best.row(),
            **extra,
        },
    )
    return out_dir


def plot_candidates(candidates: list[Candidate], space: SearchSpace, out: Path) -> Path:
    """Parameters vs memory for every candidate, by depth, with the budget line and the parameter band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gpu = get_gpu(space.budget.gpu)
    scale, unit = (1e9, "B") if max(c.params for c in candidates) > 1e8 else (1e6, "M")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for depth in sorted({c.depth for c in candidates}):
        group = [c for c in candidates if c.depth == depth]
        ax.scatter([c.params / scale for c in group], [c.memory_gib for c in group], s=12, label=f"depth {depth}")
    if space.reference is not None:
        ref = [c for c in candidates if c.key == tuple(space.reference.model_dump().values())]
        if ref:
            ax.scatter([ref[0].params / scale], [ref[0].memory_gib], marker="*", s=220, c="black", label="reference")
    ranked = [c for c in candidates if c.rank is not None]
    for c in ranked[:5]:
        ax.annotate(f"#{c.rank}", (c.params / scale, c.memory_gib), fontsize=8)
    ax.axhline(gpu.budget_gib, color="red", linestyle="--", label=f"{gpu.name} budget {gpu.budget_gib:.4g} GiB")
    low, high = band(space)
    ax.axvspan(low / scale, high / scale, color="green", alpha=0.1, label="parameter band")
    ax.set_xlabel(f"parameters ({unit})")
    ax.set_ylabel(f"memory at {space.budget.context:,} tokens, batch {space.budget.batch} (GiB)")
    ax.legend(fontsize=8)
    ax.set_title("search candidates")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def format_params(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.3f}M"
