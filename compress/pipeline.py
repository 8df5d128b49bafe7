"""Minitron end to end: importance -> prune -> search -> distill, each stage reusing what the one before wrote.

The library modules do one thing each and never call one another in a circle: `importance` scores the parent,
`prune` cuts a checkpoint to a shape, `nas` enumerates and tabulates candidate shapes, `distill` holds the KL loss and
runs train/'s loop. This module chains them as `nano2 compress` does, under one output directory:
`<output>/importance` (scores, reused when measured on the same parent), `<output>/search` (the candidate table and
`winner.yaml`), `<output>/child` (the winner pruned) and `<output>/distill` (train/'s run directory).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from compress.calibration import load_calibration
from compress.config import CompressConfig, parent_config
from compress.distill import distill_student, evaluate
from compress.importance import ImportanceScores, ImportanceSettings, compute_importance, load_scores, save_scores
from compress.nas import WINNER, Candidate, depth_drops, enumerate_candidates, make_candidate, save_table
from compress.prune import load_shape, prune_checkpoint, prune_model
from model.configs import HybridConfig
from nano2.errors import ConfigError, Nano2Error
from nano2.manifest import MANIFEST_NAME, input_ref, read_manifest


def progress_bar(console: Any) -> Any:
    """A rich progress bar for the stages (disabled when there is no console)."""
    return Progress(
        TextColumn("[bold]{task.description}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    )


# --------------------------------------------------------------------------------------------------- importance


def measure_importance(
    checkpoint: Path,
    calib: str,
    output: Path,
    settings: ImportanceSettings,
    *,
    data_root: Path,
    sources: dict[str, str],
    device: str,
    dtype: str,
    console: Any,
) -> tuple[ImportanceScores, HybridConfig]:
    """`nano2 compress importance`: the parent's scores on calibration tokens, saved to `output` with a manifest."""
    from model.io import load_checkpoint, load_config

    cfg = load_config(checkpoint)
    model = load_checkpoint(checkpoint, dtype=dtype, device=device)
    tokens = load_calibration(
        calib, settings.samples, settings.seq_len, settings.seed, data_root, cfg.vocab_size, sources
    )
    with progress_bar(console) as progress:
        scores = compute_importance(model, cfg, tokens, settings, progress)
    save_scores(scores, output, cfg, settings, [input_ref(checkpoint), input_ref(calib)], tokens=tokens.numel())
    return scores, cfg


def obtain_scores(
    cfg: CompressConfig, parent_cfg: HybridConfig, model: Any, out_dir: Path, progress: Any = None
) -> tuple[ImportanceScores, Path]:
    """The parent's importance scores: reused from `<output>/importance` when they were measured on this very
    parent checkpoint (same manifest id), else computed and saved there."""
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


# --------------------------------------------------------------------------------------------------- search


@dataclass
class SearchResult:
    """The search table's directory, every candidate (depth rows first), and what the depth stage found."""

    out_dir: Path
    candidates: list[Candidate]
    best_depth: int | None
    parent_loss: float | None


def _is_checkpoint(parent: str) -> bool:
    return Path(parent).is_dir() and (Path(parent) / "config.json").exists()


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
    progress = progress_bar(console)
    with progress:
        if not no_train:
            from model.io import load_checkpoint

            model = load_checkpoint(cfg.parent, dtype=dtype, device=device)
            scores, scores_dir = obtain_scores(cfg, parent_cfg, model, out, progress)
            inputs = [input_ref(cfg.parent), input_ref(scores_dir)]
        elif (out / "importance" / "manifest.json").exists() and has_checkpoint:
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
    tokens = getattr(cfg.search.scoring, tokens_field)
    if tokens <= 0:
        raise ConfigError(config_path, f"search.scoring.{tokens_field}", "distill scoring needs a positive budget")
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a candidate's short run always starts again from the pruned child
    distill_student(
        child,
        teacher,
        cfg.distill,
        out_dir,
        config_path,
        name=child_cfg.name,
        total_tokens=tokens,
        progress=False,
        parents=[cfg.parent],  # a candidate is pruned in memory from the parent: its lineage starts there
    )
    return evaluate(child, heldout, cfg.search.scoring.batch_size)["loss"]


# --------------------------------------------------------------------------------------------------- distill


def resolve_student(cfg: CompressConfig, config_path: str | Path, out: Path, student: str | Path | None) -> Path:
    """The pruned child: given, configured, already pruned under `<output>/child`, or the search winner pruned now."""
    chosen = student or cfg.distill.student
    if chosen is not None:
        return Path(chosen)
    child = out / "child"
    if (child / "config.json").exists():
        return child
    winner = out / "search" / WINNER
    if not winner.exists():
        raise ConfigError(
            config_path,
            "distill.student",
            f"no student: give --student, set distill.student, or run "
            f"`nano2 compress search {config_path}` first (it writes {winner})",
        )
    scores = out / "importance"
    prune_checkpoint(cfg.parent, load_shape(str(winner)), child, scores if scores.exists() else None)
    return child


def distill_run(
    cfg: CompressConfig,
    config_path: str | Path,
    out_dir: str | Path | None = None,
    student: str | Path | None = None,
    resume: bool = False,
    stop_at_step: int | None = None,
    progress: bool = True,
    evaluate_after: bool = True,
) -> dict[str, Any]:
    """`nano2 compress distill`: the parent teaches the pruned child; held-out losses before and after."""
    from model.io import check_checkpoint_dir, load_checkpoint

    out = Path(out_dir) if out_dir is not None else Path(cfg.output_dir)
    if not (Path(cfg.parent) / "config.json").exists():
        raise ConfigError(config_path, "parent", f"{cfg.parent!r} is not a checkpoint directory: the teacher is needed")
    student_dir = check_checkpoint_dir(resolve_student(cfg, config_path, out, student))
    teacher = load_checkpoint(cfg.parent, dtype=cfg.distill.teacher_dtype)
    child = load_checkpoint(student_dir)
    heldout = None
    report: dict[str, Any] = {"student": str(student_dir), "teacher": str(cfg.parent)}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # under torchrun every rank would evaluate on cuda:0
    if distributed and evaluate_after:
        report["evaluation_skipped"] = "running under torchrun: evaluate the finished run in a single process"
    if evaluate_after and not distributed and cfg.calibration.source is not None:
        s = cfg.search.scoring
        heldout = cfg.calibration.load(child.config.vocab_size, s.samples, s.seq_len, s.seed)
        report["evaluation"] = {
            "parent": evaluate(teacher.to(device), heldout, s.batch_size)["loss"],
            "pruned": evaluate(child.to(device), heldout, s.batch_size)["loss"],
        }
    tokenizer = student_dir if (student_dir / "tokenizer.json").exists() else None
    result = distill_student(
        child,
        teacher,
        cfg.distill,
        out / "distill",
        config_path,
        name=f"{cfg.name}-distill",
        tokenizer=tokenizer,
        resume=resume,
        stop_at_step=stop_at_step,
        progress=progress,
        parents=[student_dir, cfg.parent],
    )
    report.update(out_dir=str(result.out_dir), steps_done=result.steps_done, completed=result.completed)
    if heldout is not None and result.completed:
        ev = report["evaluation"]
        ev["distilled"] = evaluate(child.to(device), heldout, cfg.search.scoring.batch_size)["loss"]
        gap = ev["pruned"] - ev["parent"]
        ev["recovered"] = (ev["pruned"] - ev["distilled"]) / gap if gap > 0 else float("nan")
        (out / "distill-eval.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report
