"""Logit distillation: forward KL from a frozen teacher (the parent) to the pruned student.

The loss at every target position t (labels[:, t] != IGNORE_INDEX; labels are next-token targets aligned with the
logits, as train/data.py makes them) is

    T^2 x KL(softmax(teacher_t / T) || softmax(student_t / T))  averaged over target positions,

optionally plus `lm_weight` x the usual next-token cross-entropy (train/'s `next_token_cross_entropy`). T^2 keeps
the gradient scale independent of T (Hinton et al.). The teacher runs in eval mode under no_grad, in its own dtype,
and is never updated.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from compress.config import Distillation
from nano2.config import validate_model
from nano2.contracts.chat import IGNORE_INDEX
from nano2.errors import ConfigError
from train.config import TrainConfig
from train.loop import TrainResult, next_token_cross_entropy, run_training


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
        lm = next_token_cross_entropy(student_logits, labels)
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
        total_loss += float(next_token_cross_entropy(logits, labels)) * n
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
) -> TrainConfig:
    """train/'s TrainConfig from the `distill.train` section (the model comes from the student, not the config)."""
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
    parents: Sequence[str | Path] = (),
) -> TrainResult:
    """Distil `teacher` into `student` inside train/'s loop (checkpoints, resume and torchrun come with it);
    `parents` (the checkpoints student and teacher came from) are the result's lineage."""
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
        parents=parents,
    )
