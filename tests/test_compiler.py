"""The compiler on the shipped specs and on hand-checked cases."""

from __future__ import annotations

from fractions import Fraction

import pytest

from mixtures import compile_plan, compile_spec_file, load_spec
from mixtures.compiler import allocate_largest_remainder
from mixtures.spec import MixtureSpec
from tests.conftest import SPECS, small_spec

ONE_BATCH_12B = 736 * 8192  # 6,029,312 tokens


def _check_exact(plan):
    assert plan.total_tokens == plan.total_steps * plan.tokens_per_step <= plan.requested_tokens
    assert plan.requested_tokens - plan.total_tokens < plan.tokens_per_step
    assert plan.phases[0].start_step == 0 and plan.phases[-1].end_step == plan.total_steps
    for prev, nxt in zip(plan.phases, plan.phases[1:], strict=False):
        assert prev.end_step == nxt.start_step
    for phase in plan.phases:
        assert phase.steps == phase.end_step - phase.start_step > 0
        assert phase.sequences == phase.steps * plan.global_batch_size
        assert phase.tokens == phase.sequences * plan.seq_len
        assert sum(a.sequences for a in phase.sources) == phase.sequences
        assert sum(a.tokens for a in phase.sources) == phase.tokens
        for a in phase.sources:
            assert a.tokens == a.sequences * plan.seq_len
    assert sum(p.tokens for p in plan.phases) == plan.total_tokens
    assert sum(s.planned_tokens for s in plan.sources) == plan.total_tokens


def test_12b_plan_phase_totals_are_12_6_2_trillion():
    spec, plan = compile_spec_file(SPECS / "nano2-12b-pretrain.yaml")
    assert plan.seq_len == 8192 and plan.global_batch_size == 736
    assert plan.tokens_per_step == ONE_BATCH_12B
    _check_exact(plan)
    for phase, target in zip(plan.phases, (12 * 10**12, 6 * 10**12, 2 * 10**12), strict=True):
        assert abs(phase.tokens - target) <= ONE_BATCH_12B, (phase.name, phase.tokens)
    assert [p.name for p in plan.phases] == ["phase1", "phase2", "phase3"]
    for s in plan.sources:
        assert s.epochs <= spec.sources[s.name].max_epochs


def test_every_shipped_spec_compiles_exactly():
    names = sorted(p.name for p in SPECS.glob("*.yaml"))
    assert {"nano2-12b-pretrain.yaml", "nano2-12b-long-context.yaml", "nano2-9b-distill.yaml", "tiny.yaml"} <= set(
        names
    )
    for name in names:
        if name == "tiny.yaml":  # needs a data root; covered in test_sources
            continue
        _check_exact(compile_spec_file(SPECS / name)[1])


def test_long_context_is_phase3_scaled_to_80_percent_plus_20_percent_qa():
    pre = load_spec(SPECS / "nano2-12b-pretrain.yaml")
    lc = load_spec(SPECS / "nano2-12b-long-context.yaml")
    assert lc.seq_len == 524288 and lc.total_tokens == 18_900_000_000
    phase3 = pre.phases[-1].weights
    (only,) = lc.phases
    expected = {k: Fraction(str(v)) * Fraction(4, 5) for k, v in phase3.items() if v}
    expected["long-doc-qa"] = Fraction(1, 5)
    assert {k: Fraction(str(v)) for k, v in only.weights.items()} == expected


def test_distill_blend_is_70_post_training_30_pretraining():
    spec = load_spec(SPECS / "nano2-9b-distill.yaml")
    for phase in spec.phases:
        post = sum(Fraction(str(w)) for k, w in phase.weights.items() if k.startswith("post-"))
        pre = sum(Fraction(str(w)) for k, w in phase.weights.items() if k.startswith("pretrain-"))
        assert (post, pre) == (Fraction(7, 10), Fraction(3, 10))


def test_hand_computed_small_plan():
    spec = MixtureSpec.model_validate(small_spec())
    plan = compile_plan(spec, {n: s.tokens for n, s in spec.sources.items()})
    # 1,000,000 // (128 x 4) = 1953 steps; p1 ends at round(0.6 x 1953) = round(1171.8) = 1172.
    assert plan.total_steps == 1953
    assert [(p.start_step, p.end_step) for p in plan.phases] == [(0, 1172), (1172, 1953)]
    p1 = {a.name: a.sequences for a in plan.phases[0].sources}
    # 4688 sequences: web 2812.8, code 1406.4, math 468.8 -> floors 2812/1406/468 (4686), +1 to web and math
    assert p1 == {"web": 2813, "code": 1406, "math": 469}


def test_largest_remainder_ties_break_by_name_and_ignore_order():
    assert allocate_largest_remainder({"b": 1 / 3, "a": 1 / 3, "c": 1 / 3}, 10) == {"a": 4, "b": 3, "c": 3}
    assert allocate_largest_remainder({"c": 1 / 3, "b": 1 / 3, "a": 1 / 3}, 10) == {"a": 4, "b": 3, "c": 3}


def test_zero_weight_source_gets_nothing():
    counts = allocate_largest_remainder({"a": 0.0, "b": 0.5, "c": 0.5}, 7)
    assert counts["a"] == 0 and sum(counts.values()) == 7


def test_weights_use_the_decimals_written():
    # 0.1 and 0.7 are not exact in binary; 10 x (0.1, 0.2, 0.7) must still be exactly 1, 2, 7.
    assert allocate_largest_remainder({"a": 0.1, "b": 0.2, "c": 0.7}, 10) == {"a": 1, "b": 2, "c": 7}


def test_phase_at_step():
    plan = compile_spec_file(SPECS / "nano2-12b-pretrain.yaml")[1]
    assert plan.phase_at_step(0).name == "phase1"
    assert plan.phase_at_step(plan.phases[1].start_step).name == "phase2"
    assert plan.phase_at_step(plan.total_steps - 1).name == "phase3"
    with pytest.raises(IndexError):
        plan.phase_at_step(plan.total_steps)


def test_plan_json_round_trip(tmp_path):
    from mixtures.plan import read_plan

    plan = compile_spec_file(SPECS / "nano2-9b-distill.yaml")[1]
    path = tmp_path / "plan.json"
    path.write_text(plan.to_json())
    assert read_plan(path) == plan
