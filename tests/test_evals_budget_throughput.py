"""`nano2 eval budget` (accuracy and tokens vs thinking budget) and `nano2 eval throughput` (tokens/s over ISL/OSL
cells for two checkpoints) on tiny checkpoints: the rule is applied, JSON, PNGs and manifests are written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from evals.throughput import parse_cells, parse_size
from nano2.errors import Nano2Error


def _write_config(tmp_path: Path, shared: Path, budget: dict, model: str = "unused") -> Path:
    body = {
        "name": "budget-test",
        "model": model,
        "output_dir": str(tmp_path / "evals"),
        "data_dir": str(shared),
        "torch_threads": 1,
        "benchmarks": [{"name": "math500", "limit": 2}, {"name": "mmlu_stem", "limit": 1}],
        "budget": budget,
    }
    path = tmp_path / "budget.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.realdata
def test_budget_curve_applies_the_rule_and_writes_json_plot_manifest(tmp_path, shared_data, tiny_checkpoint_dir, cli):
    budgets, grace, answer_tokens = [4, 12], 6, 8
    config = _write_config(tmp_path, shared_data, {"budgets": budgets, "grace": grace, "answer_tokens": answer_tokens})
    res = cli("eval", "budget", config, "--model", tiny_checkpoint_dir)
    assert res.code == 0, res.err
    out = tmp_path / "evals" / tiny_checkpoint_dir.name / "budget"
    curve = json.loads((out / "budget.json").read_text())
    assert curve["model"] == tiny_checkpoint_dir.name and curve["grace"] == grace
    assert [p["budget"] for p in curve["budgets"]] == budgets
    for point in curve["budgets"]:
        assert point["n"] == 3 and set(point["by_benchmark"]) == {"math500", "mmlu_stem"}
        assert 0 <= point["ci_low"] <= point["accuracy"] <= point["ci_high"] <= 1
        assert point["mean_thinking_tokens"] <= point["budget"] + grace
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6
    for s in samples:
        # the trace ends by the model's own </think>, or by the rule: after a newline past the budget, or hard
        assert s["thinking_tokens"] <= s["budget"] + grace
        if s["forced_close"] is not None:
            assert s["thinking_tokens"] >= s["budget"] and "</think>" in s["output"]
        if s["forced_close"] == "hard":  # no newline within the grace: cut with "\n</think>"
            assert s["thinking_tokens"] == s["budget"] + grace and "\n</think>" in s["output"]
        assert s["tokens"] <= s["budget"] + grace + answer_tokens + 2  # + the forced "\n</think>"
    assert (out / "budget.png").stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "eval-budget"
    assert Path(manifest["inputs"][0]["path"]).resolve() == tiny_checkpoint_dir.resolve()
    assert any(i["path"].endswith("math500_test.jsonl") for i in manifest["inputs"])

    res = cli("eval", "budget", config, "--model", tiny_checkpoint_dir)  # a rerun reuses every sample
    assert res.code == 0 and "0 generated, 6 reused" in res.out


@pytest.mark.realdata
def test_budget_curve_needs_a_budget_section_and_a_local_model(tmp_path, shared_data, cli):
    config = _write_config(tmp_path, shared_data, {"budgets": [8]})
    body = yaml.safe_load(config.read_text())
    body["model"] = {"kind": "vllm", "model": "nvidia/NVIDIA-Nemotron-Nano-9B-v2"}
    config.write_text(yaml.safe_dump(body), encoding="utf-8")
    res = cli("eval", "budget", config)
    assert res.code == 2 and "needs a local checkpoint" in res.err
    del body["budget"]
    config.write_text(yaml.safe_dump(body), encoding="utf-8")
    res = cli("eval", "budget", config)
    assert res.code == 2 and "no `budget:` section" in res.err


def test_cells_parse_like_the_paper_writes_them():
    assert parse_size("8k") == 8192 and parse_size("512") == 512 and parse_size(" 16K ") == 16384
    assert parse_cells("1k/1k,8k/16k") == [(1024, 1024), (8192, 16384)]
    assert parse_cells("32/16") == [(32, 16)]
    for bad in ("1k", "1k/x", "0/8", "", "1k/1k/1k"):
        with pytest.raises(Nano2Error):
            parse_cells(bad)


@pytest.fixture(scope="module")
def transformer_checkpoint(tmp_path_factory) -> Path:
    """tiny-12b's sizes with every Mamba layer replaced by attention: the transformer side of the comparison."""
    from model.configs import get_config
    from model.io import build_model, save_checkpoint

    hybrid = get_config("tiny-12b")
    cfg = hybrid.model_copy(update={"name": "tiny-transformer", "pattern": hybrid.pattern.replace("M", "*")})
    out = tmp_path_factory.mktemp("transformer")
    return save_checkpoint(build_model(cfg, seed=0), out, cfg)


def test_throughput_grid_writes_json_plot_manifest(tmp_path, tiny_checkpoint_dir, transformer_checkpoint, cli):
    out = tmp_path / "throughput"
    res = cli(
        "eval", "throughput", tiny_checkpoint_dir, transformer_checkpoint,
        "--cells", "32/16,48/8", "--engine", "local", "--threads", "1", "-o", out,
    )  # fmt: skip
    assert res.code == 0, res.err
    result = json.loads((out / "throughput.json").read_text())
    assert result["engine"] == "local" and result["batch"] == 1
    hybrid, transformer = (m["label"] for m in result["models"])
    assert result["models"][0]["pattern"].count("M") == 11 and "M" not in result["models"][1]["pattern"]
    assert [(c["isl"], c["osl"]) for c in result["cells"]] == [(32, 16), (48, 8)]
    for cell in result["cells"]:
        rates = cell["tokens_per_s"]
        assert rates[hybrid] > 0 and rates[transformer] > 0
        assert cell["ratio"] == pytest.approx(rates[hybrid] / rates[transformer])
    assert (out / "throughput.png").stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "eval-throughput" and len(manifest["inputs"]) == 2
    assert "32/16" in res.out


def test_throughput_accepts_named_configs_and_rejects_unknown_models(tmp_path, cli):
    res = cli(
        "eval",
        "throughput",
        "tiny-9b",
        "tiny-12b",
        "--cells",
        "16/4",
        "--engine",
        "local",
        "--threads",
        "1",
        "-o",
        tmp_path,
    )
    assert res.code == 0, res.err
    result = json.loads((tmp_path / "throughput.json").read_text())
    assert [m["label"] for m in result["models"]] == ["tiny-9b", "tiny-12b"]
    res = cli("eval", "throughput", "no-such-model", "tiny-12b", "--cells", "16/4", "-o", tmp_path / "x")
    assert res.code == 2 and "neither a checkpoint directory nor a named config" in res.err
    if importlib.util.find_spec("vllm") is None:
        res = cli("eval", "throughput", "tiny-9b", "tiny-12b", "--cells", "16/4", "--engine", "vllm", "-o", tmp_path)
        assert res.code == 2 and "vllm package is not installed" in res.err
