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
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.config import CompressConfig, SearchSpace, ShapePoint
from compress.importance import ImportanceScores
from compress.prune import PruneShape, ShapeError, check_widths, child_config
from model.configs import HybridConfig
from model.size import GIB, get_gpu, inference_memory, total_params
from nano2.errors import ConfigError, Nano2Error

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
        kind="nas",
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


@dataclass
class SearchResult:
    out_dir: Path
    candidates: list[Candidate]
    best_depth: int | None
    parent_loss: float | None


def _is_checkpoint(parent: str) -> bool:
    return Path(parent).is_dir() and (Path(parent) / "config.json").exists()


def obtain_scores(
    cfg: CompressConfig, parent_cfg: HybridConfig, model: Any, out_dir: Path, progress: Any = None
) -> tuple[ImportanceScores, Path]:
    """The parent's importance scores: reused from `<output>/importance` when they were measured on this very
    parent checkpoint (same manifest id), else computed and saved there."""
    from compress.importance import ImportanceSettings, compute_importance, load_scores, save_scores
    from nano2.manifest import MANIFEST_NAME, input_ref, read_manifest

    directory = out_dir / "importance"
    parent_ref = input_ref(cfg.parent)
    if (directory / MANIFEST_NAME).exists():
        made_from = read_manifest(directory).inputs
        if any(
            i.manifest_id == parent_ref.manifest_id and i.content_hash == parent_ref.content_hash for i in made_from
        ):
            scores = load_scores(directory)
            scores.check_parent(parent_cfg, str(directory))
            return scores, directory
    calib = cfg.calibration
    tokens = calib.load(parent_cfg.vocab_size)
    scores = compute_importance(model, parent_cfg, tokens, calib, progress)
    settings = ImportanceSettings.model_validate(calib.model_dump(include=set(ImportanceSettings.model_fields)))
    inputs = [parent_ref] + ([input_ref(calib.source)] if Path(str(calib.source)).exists() else [])
    save_scores(scores, directory, parent_cfg, settings, inputs, tokens=tokens.numel())
    return scores, directory


def run_search(
    cfg: CompressConfig,
    config_path: str | Path,
    no_train: bool = False,
    out_dir: str | Path | None = None,
    device: str = "cpu",
    console: Any = None,
    dtype: str = "fp32",
) -> SearchResult:
    """Enumerate, filter by memory and parameters, and (unless `no_train`) rank depth, then widths."""
    from compress.config import parent_config

    out = Path(out_dir) if out_dir is not None else Path(cfg.output_dir)
    search_dir = out / "search"
    parent_cfg = parent_config(cfg, config_path)
    has_checkpoint = _is_checkpoint(cfg.parent)
    if not no_train and not has_checkpoint:
        raise ConfigError(
            config_path,
            "parent",
            f"{cfg.parent!r} is not a checkpoint directory: scoring candidates needs the "
            "trained parent (use --no-train for the memory and parameter table only)",
        )
    scores: ImportanceScores | None = None
    scores_dir: Path | None = None
    inputs: list[Any] = []
    model = None
    progress = _progress(console)
    with progress:
        if not no_train:
            from model.io import load_checkpoint
            from nano2.manifest import input_ref

            model = load_checkpoint(cfg.parent, dtype=dtype, device=device)
            scores, scores_dir = obtain_scores(cfg, parent_cfg, model, out, progress)
            inputs = [input_ref(cfg.parent), input_ref(scores_dir)]
        elif (out / "importance" / "manifest.json").exists() and has_checkpoint:
            from compress.importance import load_scores

            scores, scores_dir = load_scores(out / "importance"), out / "importance"
            scores.check_parent(parent_cfg, str(scores_dir))
        drops = depth_drops(parent_cfg, cfg.search, scores, str(config_path))
        candidates = enumerate_candidates(parent_cfg, cfg.search, drops, str(config_path))
        best_depth = parent_loss = None
        if not no_train:
            assert model is not None and scores is not None
            best_depth, parent_loss, depth_rows = _score(
                cfg, config_path, parent_cfg, model, scores, candidates, drops, search_dir, progress
            )
            candidates = depth_rows + candidates
    extra = {
        "no_train": no_train,
        "best_depth": best_depth,
        "parent_loss": parent_loss,
        "drops": {str(k): v for k, v in drops.items()},
        "depth_ranking": "measured" if scores is not None and scores.depth_removal_order else "config drop_layers",
    }
    save_table(candidates, search_dir, cfg, config_path, inputs, extra)
    return SearchResult(search_dir, candidates, best_depth, parent_loss)


def _progress(console: Any):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    )


def _score(
    cfg: CompressConfig,
    config_path: str | Path,
    parent_cfg: HybridConfig,
    model: Any,
    scores: ImportanceScores,
    candidates: list[Candidate],
    drops: dict[int, list[int]],
    search_dir: Path,
    progress: Any,
) -> tuple[int, float, list[Candidate]]:
    """Depth stage (each depth pruned at full width), then widths at the best depth; fills the scores in place."""
    from compress.distill import evaluate
    from compress.prune import prune_model

    scoring = cfg.search.scoring
    heldout = cfg.calibration.load(parent_cfg.vocab_size, scoring.samples, scoring.seq_len, scoring.seed)
    parent_loss = evaluate(model, heldout, scoring.batch_size)["loss"]
    distilling = scoring.method == "distill"

    def measure(c: Candidate, distill_tokens_field: str | None = None) -> None:
        """Proxy loss and KL of the pruned child; with a field, also its loss after a short distillation."""
        child, child_cfg, _ = prune_model(model, parent_cfg, c.shape(), scores)
        result = evaluate(child, heldout, scoring.batch_size, teacher=model)
        c.proxy_loss, c.proxy_kl = result["loss"], result["kl"]
        if distill_tokens_field is not None:
            label = f"d{c.depth}-h{c.hidden}-f{c.ffn}-m{c.mamba_heads}"
            c.distill_loss = _short_distill(
                cfg, config_path, distill_tokens_field, child, model, child_cfg, heldout, search_dir / "distill" / label
            )

    full = parent_cfg
    depth_rows = [
        make_candidate(full, cfg.search, d, drops[d], full.hidden_size, full.intermediate_size, full.mamba_num_heads)
        for d in cfg.search.depth
    ]
    task = progress.add_task("depth stage", total=len(depth_rows))
    for row in depth_rows:
        row.stage = "depth"
        measure(row, "depth_distill_tokens" if distilling else None)
        progress.advance(task)
    scored_depths = sorted(depth_rows, key=lambda c: c.score if c.score is not None else math.inf)
    with_feasible = [r.depth for r in scored_depths if any(c.depth == r.depth and c.feasible for c in candidates)]
    if not with_feasible:
        raise Nano2Error(
            "no candidate fits the memory budget and the parameter band at any depth; widen the search space, "
            "the band (params_tolerance) or the budget"
        )
    best_depth = with_feasible[0]
    if best_depth != scored_depths[0].depth:
        scored_depths[0].notes.append(f"best depth, but no width at depth {scored_depths[0].depth} is feasible")
    width = sorted((c for c in candidates if c.depth == best_depth and c.feasible), key=lambda c: -c.params)
    width = width[: scoring.max_width_candidates]
    task = progress.add_task(f"width stage (depth {best_depth})", total=len(width))
    for c in width:
        c.stage = "width"
        measure(c)
        progress.advance(task)
    if distilling:
        top = sorted(width, key=lambda c: c.proxy_loss)[: scoring.top_k]
        task = progress.add_task("width distillation", total=len(top))
        for c in top:
            measure(c, "distill_tokens")
            progress.advance(task)
    ranked = sorted(width, key=lambda c: (c.distill_loss is None, c.score))
    for i, c in enumerate(ranked):
        c.rank = i + 1
    return best_depth, parent_loss, depth_rows


def _short_distill(
    cfg: CompressConfig,
    config_path: str | Path,
    tokens_field: str,
    child: Any,
    teacher: Any,
    child_cfg: HybridConfig,
    heldout: Any,
    out_dir: Path,
) -> float:
    """A short distillation of one candidate in train/'s loop (`search.scoring.<tokens_field>` tokens); its loss."""
    import shutil

    from compress.distill import distill_student, evaluate

    tokens = getattr(cfg.search.scoring, tokens_field)
    if tokens <= 0:
        raise ConfigError(config_path, f"search.scoring.{tokens_field}", "distill scoring needs a positive budget")
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a candidate's short run always starts again from the pruned child
    distill_student(
        child, teacher, cfg.distill, out_dir, config_path, name=child_cfg.name, total_tokens=tokens, progress=False
    )
    return evaluate(child, heldout, cfg.search.scoring.batch_size)["loss"]
