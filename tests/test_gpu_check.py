"""benchmarks/gpu_check.py --dry-run (every GPU section's code on CPU at tiny sizes) and the equal-memory helpers of
benchmarks/bench_decode.py. The GPU run itself cannot happen in CI; the dry run keeps its code paths working."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_decode  # noqa: E402
import gpu_check  # noqa: E402

from model.configs import get_config  # noqa: E402
from model.size import GIB, inference_memory  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("gpu_check")
    return gpu_check.main(["--dry-run", "--out", str(out)]), out


def test_dry_run_runs_every_section_and_writes_json_and_markdown(dry_run):
    report, out = dry_run
    sections = {s["name"]: s for s in report["sections"]}
    assert list(sections) == list(gpu_check.SECTIONS)
    assert all(s["status"] == "ok" for s in sections.values()), {n: s["status"] for n, s in sections.items()}
    [json_path] = out.glob("dryrun-*.json")
    [md_path] = out.glob("dryrun-*.md")
    assert json.loads(json_path.read_text())["dry_run"] is True
    markdown = md_path.read_text()
    for name in gpu_check.SECTIONS:
        assert f"## {name}: ok" in markdown

    train = sections["train"]["rows"]
    assert [r["activation_checkpointing"] for r in train] == [False, True]
    assert all(r["tokens_per_s"] > 0 and r["steps"] >= 2 for r in train)
    decode = sections["decode"]["rows"]
    assert [r["engine"] for r in decode] == ["FastDecoder", "transformers generate"]
    assert decode[0]["speedup_vs_generate"] == pytest.approx(decode[0]["tokens_per_s"] / decode[1]["tokens_per_s"])


def test_dry_run_equal_memory_fits_the_budget(dry_run):
    report, _ = dry_run
    rows = next(s for s in report["sections"] if s["name"] == "equal_memory")["rows"]
    budget = report["plan"]["equal_budget_gib"]
    assert [r["model"] for r in rows] == ["hybrid", "transformer"]
    for row in rows:
        assert row["batch"] >= 1 and row["allocated_gib"] <= budget and row["output_tokens_per_s"] > 0
    assert rows[1]["ratio_hybrid_over_transformer"] == pytest.approx(
        rows[0]["output_tokens_per_s"] / rows[1]["output_tokens_per_s"]
    )


def test_fp8_section_reports_why_it_skips_the_fp8_arm(dry_run):
    report, _ = dry_run
    fp8 = next(s for s in report["sections"] if s["name"] == "fp8")
    assert fp8["rows"][0]["precision"] == "bf16" and fp8["rows"][0]["steps"] == report["plan"]["fp8_steps"]
    reason = gpu_check.fp8_unavailable("cpu")
    assert reason is not None  # no torchao, or no CUDA: the CPU never runs the fp8 arm
    assert any(reason in note for note in fp8["notes"])


def test_bad_arguments_are_clear_errors(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--sections", "train,warp"])
    assert "unknown ['warp']" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            gpu_check.main([])
        assert "--dry-run" in capsys.readouterr().err


def test_hybrid_1b_is_shaped_like_the_12b_at_about_a_billion_parameters():
    cfg = gpu_check.hybrid_1b()
    parent = get_config("tiny-12b")
    assert cfg.pattern == parent.pattern and cfg.counts() == {"mamba": 11, "attention": 3, "mlp": 11}
    assert 1.0e9 < sum(gpu_check.param_breakdown(cfg).values()) < 1.5e9


def test_trapezoid_total_equals_the_sum_of_a_linear_step_time():
    def step_time(p: int) -> float:
        return 2.0 + 0.01 * p

    first, last = 100, 1122
    positions = bench_decode.probe_positions(first, last - first + 2, 5)
    assert positions[0] == first and positions[-1] == last and len(positions) == 5
    exact = sum(step_time(p) for p in range(first, last + 1))
    got = bench_decode.trapezoid_total(positions, [step_time(p) for p in positions], first, last)
    assert got == pytest.approx(exact, rel=1e-9)
    assert bench_decode.trapezoid_total([first], [3.0], first, last) == pytest.approx(3.0 * (last - first + 1))


def test_equal_memory_batches_follow_the_kv_cache():
    """At long context the transformer (8 attention layers) caches 4x the hybrid's (2) K/V per token, so the hybrid
    fits nearly 4x the sequences in the same memory, and each model's batch is the largest that fits."""
    configs = bench_decode.model_pair()
    budget = 4 * GIB
    batches = {n: bench_decode.max_batch(c, 24576, budget, "fp32") for n, c in configs.items()}
    assert 3.5 < batches["hybrid"] / batches["transformer"] < 4.0
    for name, cfg in configs.items():
        assert inference_memory(cfg, 24576, batches[name], "fp32").total <= budget
        assert inference_memory(cfg, 24576, batches[name] + 1, "fp32").total > budget
