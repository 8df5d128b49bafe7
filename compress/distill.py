"""Logit distillation: forward KL from a frozen teacher (the parent) to the pruned student.

The loss at every target position t (labels[:, t] != -100; labels are next-token targets aligned with the logits,
as train/data.py makes them) is

    T^2 x KL(softmax(teacher_t / T) || softmax(student_t / T))  averaged over target positions,

optionally plus `lm_weight` x the usual next-token cross-entropy. T^2 keeps the gradient scale independent of T
(Hinton et al.). The teacher runs in eval mode under no_grad, in its own dtype, and is never updated.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from compress.config import CompressConfig, Distillation

IGNORE_INDEX = -100


def forward_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """T^2 x mean over masked positions of KL(teacher || student) on temperature-softened distributions."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} != teacher {tuple(teacher_logits.shape)}")
    student_logp = F.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_logp = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    per_token = (teacher_logp.exp() * (teacher_logp - student_logp)).sum(dim=-1)
    if mask is None:
        mean = per_token.mean()
    else:
        mask = mask.to(per_token.dtype)
        mean = (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    return mean * temperature**2


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against labels already aligned with the logits (ignore_index -100)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)


class DistillationLoss:
    """`loss_fn(model, input_ids, labels) -> (loss, metrics)` for train/'s loop, holding the frozen teacher."""

    def __init__(self, teacher: Any, temperature: float = 1.0, kl_weight: float = 1.0, lm_weight: float = 0.0):
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        if kl_weight < 0 or lm_weight < 0 or kl_weight + lm_weight == 0:
            raise ValueError("kl_weight and lm_weight must be >= 0 and not both 0")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.temperature = temperature
        self.kl_weight = kl_weight
        self.lm_weight = lm_weight

    def __call__(
        self, model: Any, input_ids: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if next(self.teacher.parameters()).device != input_ids.device:
            self.teacher.to(input_ids.device)  # the loop puts the student on its device; the teacher follows once
        with torch.no_grad():
            self.teacher.eval()
            teacher_logits = self.teacher(input_ids=input_ids, use_cache=False).logits
        student_logits = model(input_ids=input_ids, use_cache=False).logits
        mask = labels != IGNORE_INDEX
        kl = forward_kl(student_logits, teacher_logits, mask, self.temperature)
        lm = next_token_loss(student_logits, labels)
        loss = self.kl_weight * kl + (self.lm_weight * lm if self.lm_weight else 0.0)
        return loss, {"kl": float(kl.detach()), "lm_loss": float(lm.detach())}


def aligned_labels(input_ids: torch.Tensor) -> torch.Tensor:
    """labels[:, t] = input_ids[:, t + 1], the last position ignored (train/data.py's convention)."""
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, :-1] = input_ids[:, 1:]
    return labels


@torch.no_grad()
def evaluate(
    student: Any, tokens: torch.Tensor, batch_size: int, teacher: Any = None, temperature: float = 1.0
) -> dict[str, float]:
    """Held-out next-token loss of `student` (and its KL to `teacher` when given), token-weighted over batches."""
    student.eval()
    device = next(student.parameters()).device
    total_loss = total_kl = 0.0
    count = 0
    for start in range(0, len(tokens), batch_size):
        ids = tokens[start : start + batch_size].to(device)
        labels = aligned_labels(ids)
        n = int((labels != IGNORE_INDEX).sum())
        logits = student(input_ids=ids, use_cache=False).logits
        total_loss += float(next_token_loss(logits, labels)) * n
        if teacher is not None:
            teacher_logits = teacher(input_ids=ids, use_cache=False).logits
            total_kl += float(forward_kl(logits, teacher_logits, labels != IGNORE_INDEX, temperature)) * n
        count += n
    out = {"loss": total_loss / count}
    if teacher is not None:
        out["kl"] = total_kl / count
    return out


def train_config(
    settings: Distillation,
    config_path: str | Path | None,
    name: str,
    total_tokens: int | None = None,
    tokenizer: str | Path | None = None,
):
    """train/'s TrainConfig from the `distill.train` section (the model comes from the student, not the config)."""
    from nano2.config import validate_model
    from nano2.errors import ConfigError
    from train.config import TrainConfig

    data = {"name": name, **settings.train}
    if "model" in data:
        raise ConfigError(config_path, "distill.train.model", "the student is the model; remove this key")
    if total_tokens is not None:
        data["data"] = {**data.get("data", {}), "total_tokens": total_tokens}
    if tokenizer is not None and "tokenizer" not in data:
        data["tokenizer"] = str(tokenizer)
    where = f"{config_path} (distill.train)" if config_path is not None else "distill.train"
    return validate_model(data, TrainConfig, where)


def distill_student(
    student: Any,
    teacher: Any,
    settings: Distillation,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    name: str = "distill",
    total_tokens: int | None = None,
    tokenizer: str | Path | None = None,
    resume: bool = False,
    stop_at_step: int | None = None,
    progress: bool = True,
):
    """Distil `teacher` into `student` inside train/'s loop (checkpoints, resume and torchrun come with it)."""
    from train.loop import run_training

    cfg = train_config(settings, config_path, name, total_tokens, tokenizer)
    loss_fn = DistillationLoss(teacher, settings.temperature, settings.kl_weight, settings.lm_weight)
    return run_training(
        cfg,
        model=student,
        loss_fn=loss_fn,
        out_dir=out_dir,
        config_path=config_path,
        resume=resume,
        stop_at_step=stop_at_step,
        progress=progress,
    )


def resolve_student(cfg: CompressConfig, config_path: str | Path, out: Path, student: str | Path | None) -> Path:
    """The pruned child: given, configured, already pruned under `<output>/child`, or the search winner pruned now."""
    from compress.nas import WINNER
    from compress.prune import load_shape, prune_checkpoint
    from nano2.errors import ConfigError

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
    import json
    import os

    from model.io import check_checkpoint_dir, load_checkpoint
    from nano2.errors import ConfigError

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
    )
    report.update(out_dir=str(result.out_dir), steps_done=result.steps_done, completed=result.completed)
    if heldout is not None and result.completed:
        ev = report["evaluation"]
        ev["distilled"] = evaluate(child.to(device), heldout, cfg.search.scoring.batch_size)["loss"]
        gap = ev["pruned"] - ev["parent"]
        ev["recovered"] = (ev["pruned"] - ev["distilled"]) / gap if gap > 0 else float("nan")
        (out / "distill-eval.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report
