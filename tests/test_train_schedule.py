"""Learning-rate schedules: the WSD shape (warmup, stable, decay endpoints), cosine, constant, and the paper's 12B."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mixtures import compile_spec_file
from train.config import load_train_config
from train.schedule import LRSchedule

REPO = Path(__file__).resolve().parent.parent


def test_wsd_warmup_stable_decay_endpoints():
    s = LRSchedule("wsd", peak=1.0, min_lr=0.01, total_steps=100, warmup_steps=10, decay_steps=20)
    lrs = [s(i) for i in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == 1.0  # linear warmup reaches the peak at its last step
    assert all(lrs[i] < lrs[i + 1] for i in range(9))
    assert lrs[10:80] == [1.0] * 70  # stable
    assert lrs[80] == pytest.approx(1.0 - 0.99 / 20) and lrs[99] == pytest.approx(0.01, abs=1e-15)  # decay ends at min
    steps = [lrs[i] - lrs[i + 1] for i in range(79, 99)]
    assert steps[0] == pytest.approx(0.99 / 20) and all(d == pytest.approx(0.99 / 20) for d in steps)  # linear


@pytest.mark.parametrize(("style", "mid"), [("cosine", 0.5), ("minus_sqrt", 1 - math.sqrt(0.5)), ("linear", 0.5)])
def test_wsd_decay_styles_hit_both_ends(style, mid):
    s = LRSchedule("wsd", peak=2.0, min_lr=0.0, total_steps=12, warmup_steps=0, decay_steps=10, decay_style=style)
    assert s(0) == s(1) == 2.0 and s(11) == pytest.approx(0.0, abs=1e-12)
    assert s(2 + 4) == pytest.approx(2.0 * mid)  # p = 5/10 at step 6


def test_cosine_and_constant():
    c = LRSchedule("cosine", peak=1.0, min_lr=0.1, total_steps=21, warmup_steps=1)
    assert c(0) == 1.0 and c(20) == pytest.approx(0.1) and c(10) == pytest.approx(0.55)
    k = LRSchedule("constant", peak=3e-4, min_lr=3e-4, total_steps=5, warmup_steps=2)
    assert [k(i) for i in range(5)] == [1.5e-4, 3e-4, 3e-4, 3e-4, 3e-4]


def test_impossible_schedules_are_refused():
    with pytest.raises(ValueError, match="longer than the run"):
        LRSchedule("wsd", peak=1.0, min_lr=0.0, total_steps=10, warmup_steps=6, decay_steps=5)


def test_the_12b_config_has_the_papers_schedule():
    cfg = load_train_config(REPO / "train/configs/nano2-12b-pretrain.yaml")
    plan = compile_spec_file(cfg.data.spec)[1]
    assert (plan.seq_len, plan.global_batch_size, plan.tokens_per_step) == (8192, 736, 6_029_312)
    assert plan.total_steps == 20 * 10**12 // 6_029_312 == 3_317_128
    s = cfg.schedule.build(plan.total_steps, plan.tokens_per_step)
    assert s.warmup_steps == 1327  # 8B tokens
    assert s.decay_steps == 597_083  # 3.6T tokens
    assert s(s.warmup_steps - 1) == 4.5e-4 and s(s.decay_start - 1) == 4.5e-4
    assert s(plan.total_steps - 1) == pytest.approx(4.5e-6)
    assert [p.start_step for p in plan.phases] == [0, 1_990_277, 2_985_415]
    assert cfg.optimizer.betas == (0.9, 0.95) and cfg.optimizer.weight_decay == 0.1
    assert cfg.precision.fp8.enabled and cfg.precision.bf16
    assert cfg.precision.fp8.bf16_first_layers == cfg.precision.fp8.bf16_last_layers == 2


def test_the_12b_long_context_config_is_constant_at_the_papers_rate():
    cfg = load_train_config(REPO / "train/configs/nano2-12b-long-context.yaml")
    plan = compile_spec_file(cfg.data.spec)[1]
    assert (plan.seq_len, plan.global_batch_size) == (524_288, 12)
    s = cfg.schedule.build(plan.total_steps, plan.tokens_per_step)
    assert {s(i) for i in (0, plan.total_steps // 2, plan.total_steps - 1)} == {4.5e-6}
    assert set(cfg.data.sources) == {src.name for src in plan.sources}
