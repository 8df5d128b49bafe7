"""Logit distillation loss: forward KL with temperature against independent references, a frozen teacher, and the
optional next-token term."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from compress.distill import DistillationLoss, aligned_labels, evaluate, forward_kl
from model.configs import get_config
from model.io import build_model, quiet_transformers
from train.loop import next_token_cross_entropy


def manual_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, t: float) -> float:
    """sum_v p log(p / q) per position with plain Python floats, averaged over masked positions, times t^2."""
    total, count = 0.0, 0
    for b in range(student.shape[0]):
        for pos in range(student.shape[1]):
            if not mask[b, pos]:
                continue
            s = [x / t for x in student[b, pos].tolist()]
            te = [x / t for x in teacher[b, pos].tolist()]
            zs = math.log(sum(math.exp(x) for x in s))
            zt = math.log(sum(math.exp(x) for x in te))
            total += sum(math.exp(a - zt) * ((a - zt) - (c - zs)) for a, c in zip(te, s, strict=True))
            count += 1
    return total / count * t * t


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_forward_kl_matches_references(temperature):
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 5, 11, generator=g) * 3, torch.randn(2, 5, 11, generator=g) * 3
    mask = torch.tensor([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0]], dtype=torch.bool)
    ours = forward_kl(student, teacher, mask, temperature).item()
    assert ours == pytest.approx(manual_kl(student, teacher, mask, temperature), rel=1e-5)
    per_position = F.kl_div(
        F.log_softmax(student / temperature, -1), F.log_softmax(teacher / temperature, -1),
        reduction="none", log_target=True,
    ).sum(-1)  # fmt: skip
    assert ours == pytest.approx((per_position[mask].mean() * temperature**2).item(), rel=1e-5)


def test_forward_kl_is_zero_only_for_equal_distributions_and_is_forward():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1, 4, 9, generator=g), torch.randn(1, 4, 9, generator=g)
    assert forward_kl(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert forward_kl(a + 5.0, a).item() == pytest.approx(0.0, abs=1e-6)  # softmax ignores a shift
    assert forward_kl(a, b).item() > 0
    # forward KL(teacher || student) is not symmetric: swapping the roles changes it
    assert forward_kl(a, b).item() != pytest.approx(forward_kl(b, a).item(), rel=1e-3)
    with pytest.raises(ValueError, match="student logits"):
        forward_kl(a, b[..., :5])


def test_next_token_loss_matches_transformers_shifted_loss():
    quiet_transformers()
    model = build_model(get_config("tiny-12b"), seed=0)
    ids = torch.randint(0, 4096, (2, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)  # transformers shifts labels inside
        ours = next_token_cross_entropy(out.logits, aligned_labels(ids))
        assert ours.item() == pytest.approx(out.loss.item(), rel=1e-5)


def test_distillation_loss_trains_the_student_only():
    quiet_transformers()
    teacher = build_model(get_config("tiny-12b"), seed=0)
    student = build_model(get_config("tiny-9b"), seed=1).train()
    loss_fn = DistillationLoss(teacher, temperature=2.0, kl_weight=1.0, lm_weight=0.5)
    ids = torch.randint(0, 4096, (2, 16), generator=torch.Generator().manual_seed(3))
    labels = aligned_labels(ids)
    labels[0, :5] = -100  # e.g. a prompt that carries no loss
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    loss, metrics = loss_fn(student, ids, labels)
    loss.backward()
    assert not teacher.training and all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    with torch.no_grad():
        s_logits, t_logits = student(input_ids=ids).logits, teacher(input_ids=ids).logits
    kl = forward_kl(s_logits, t_logits, labels != -100, 2.0).item()
    lm = next_token_cross_entropy(s_logits, labels).item()
    assert metrics["kl"] == pytest.approx(kl, rel=1e-4) and metrics["lm_loss"] == pytest.approx(lm, rel=1e-4)
    assert loss.item() == pytest.approx(kl + 0.5 * lm, rel=1e-4)


def test_distillation_loss_rejects_nothing_to_train():
    teacher = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="not both 0"):
        DistillationLoss(teacher, kl_weight=0.0, lm_weight=0.0)
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(teacher, temperature=0.0)


def test_evaluate_reports_loss_and_kl_to_teacher():
    quiet_transformers()
    model = build_model(get_config("tiny-9b"), seed=0)
    ids = torch.randint(0, 4096, (3, 20), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        reference = model(input_ids=ids, labels=ids).loss.item()
    result = evaluate(model, ids, batch_size=2, teacher=model)
    assert result["loss"] == pytest.approx(reference, rel=1e-5)
    assert result["kl"] == pytest.approx(0.0, abs=1e-6)


def test_train_section_errors_name_the_field():
    from compress.config import Distillation
    from compress.distill import train_config
    from nano2.errors import ConfigError

    base = {"data": {"spec": "x.yaml"}, "micro_batch_size": 1, "schedule": {"lr": 1e-3}}
    cfg = train_config(Distillation(train=base), "c.yaml", "run", total_tokens=1024, tokenizer="tok")
    assert cfg.name == "run" and cfg.data.total_tokens == 1024 and str(cfg.tokenizer) == "tok" and cfg.model is None
    with pytest.raises(ConfigError, match="the student is the model"):
        train_config(Distillation(train={**base, "model": {"name": "tiny-9b"}}), "c.yaml", "run")
    with pytest.raises(ConfigError, match=r"c\.yaml \(distill\.train\): micro_batch_size"):
        train_config(Distillation(train={**base, "micro_batch_size": 0}), "c.yaml", "run")
