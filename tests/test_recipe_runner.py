"""The recipe runner: caching by fingerprint, --from / --only, failures, overrides (on real `nano2 mix` stages)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nano2.app.recipe import Runner, apply_overrides, load_recipe
from nano2.errors import ConfigError, Nano2Error
from tests.conftest import small_spec


def _recipe(tmp_path: Path, spec_path: Path, code_weight: float = 0.3, broken: bool = False) -> Path:
    stages = [
        {
            "name": "plan",
            "run": ["mix", "plan", "{config}", "-o", "{run_dir}/plan/plan.json", "--quiet"],
            "config": str(spec_path),
            "overrides": {"phases.0.weights.code": code_weight, "phases.0.weights.web": round(0.9 - code_weight, 6)},
            "outputs": ["{run_dir}/plan"],
        },
        {
            "name": "plot",
            "run": ["mix", "plot", "{run_dir}/.recipe/configs/plan.yaml", "-o", "{run_dir}/plot/mixture.png"],
            "after": ["plan"],
            "outputs": ["{run_dir}/plot"],
        },
        {
            "name": "other",
            "run": ["mix", "plan", str(spec_path), "-o", "{run_dir}/other/plan.json", "--quiet"],
            "outputs": ["{run_dir}/other"],
        },
    ]
    if broken:
        stages.append({"name": "broken", "run": ["mix", "plan", "{run_dir}/nope.yaml"], "after": ["plan"]})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "run_dir": str(tmp_path / "run"), "stages": stages}))
    return path


@pytest.fixture
def spec_path(write_spec) -> Path:
    return write_spec(small_spec())


def _statuses(results) -> dict[str, str]:
    return {r.name: r.status for r in results}


def test_second_run_skips_and_weight_edit_reruns_only_dependants(tmp_path, spec_path):
    path = _recipe(tmp_path, spec_path)
    first = Runner(load_recipe(path), path).run()
    assert _statuses(first) == {"plan": "ran", "plot": "ran", "other": "ran"}
    plan = json.loads((tmp_path / "run/plan/plan.json").read_text())
    assert (tmp_path / "run/plot/mixture.png").stat().st_size > 1000

    second = Runner(load_recipe(path), path).run()
    assert _statuses(second) == {"plan": "skipped", "plot": "skipped", "other": "skipped"}

    path = _recipe(tmp_path, spec_path, code_weight=0.35)
    third = Runner(load_recipe(path), path).run()
    assert _statuses(third) == {"plan": "ran", "plot": "ran", "other": "skipped"}
    replanned = json.loads((tmp_path / "run/plan/plan.json").read_text())
    assert replanned != plan
    summary = json.loads((tmp_path / "run/.recipe/last_run.json").read_text())
    assert [s["status"] for s in summary["stages"]] == ["ran", "ran", "skipped"]


def test_only_and_from_force_what_is_asked(tmp_path, spec_path):
    path = _recipe(tmp_path, spec_path)
    Runner(load_recipe(path), path).run()
    only = Runner(load_recipe(path), path).run(only=["plot"])
    assert _statuses(only) == {"plan": "not-selected", "plot": "ran", "other": "not-selected"}
    start = Runner(load_recipe(path), path).run(start="plot")
    assert _statuses(start) == {"plan": "skipped", "plot": "ran", "other": "ran"}
    with pytest.raises(Nano2Error, match="no stage 'nope'"):
        Runner(load_recipe(path), path).run(only=["nope"])


def test_failed_stage_stops_with_log_and_keeps_finished_ones(tmp_path, spec_path):
    path = _recipe(tmp_path, spec_path, broken=True)
    with pytest.raises(Nano2Error, match=r"stage broken failed \(exit 2\).*log:"):
        Runner(load_recipe(path), path).run()
    state = json.loads((tmp_path / "run/.recipe/state/broken.json").read_text())
    assert state["status"] == "failed"
    assert "file not found" in Path(state["log"]).read_text()
    assert (tmp_path / "run/plan/plan.json").exists()
    again = Runner(load_recipe(path), path)
    with pytest.raises(Nano2Error):
        again.run()
    assert json.loads((tmp_path / "run/.recipe/last_run.json").read_text())["stages"][0]["status"] == "skipped"


def test_missing_required_input_is_skipped_with_a_note(tmp_path, spec_path):
    path = _recipe(tmp_path, spec_path)
    recipe = yaml.safe_load(path.read_text())
    recipe["stages"][2]["requires"] = [str(tmp_path / "no-such-warcs")]
    path.write_text(yaml.safe_dump(recipe))
    results = Runner(load_recipe(path), path).run()
    other = next(r for r in results if r.name == "other")
    assert other.status == "missing-input" and "no-such-warcs" in other.note


def test_recipe_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    stage = {"name": "a", "run": ["mix"], "after": ["b"]}
    bad.write_text(yaml.safe_dump({"name": "x", "run_dir": "r", "stages": [stage]}))
    with pytest.raises(ConfigError, match="not an earlier stage"):
        load_recipe(bad)
    bad.write_text(yaml.safe_dump({"name": "x", "run_dir": "r", "stages": [{"name": "a", "run": ["fly"]}]}))
    with pytest.raises(ConfigError, match=r"bad.yaml.*stages\[0\]\.run.*unknown nano2 command 'fly'"):
        load_recipe(bad)


def test_overrides_set_nested_keys_and_list_items():
    config = {"a": {"b": 1}, "phases": [{"w": {"x": 0.5}}, {"w": {"x": 0.2}}]}
    out = apply_overrides(config, {"a.b": 2, "phases.1.w.x": 0.9, "new.key": "v"}, "here")
    assert out == {"a": {"b": 2}, "phases": [{"w": {"x": 0.5}}, {"w": {"x": 0.9}}], "new": {"key": "v"}}
    assert config["a"]["b"] == 1
    with pytest.raises(Nano2Error, match="not an index"):
        apply_overrides(config, {"phases.5.w": 1}, "here")
