"""The run report: built from a real (small) recipe run, rendered in headless Chromium, screenshot taken."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nano2.app.recipe import Runner, load_recipe
from nano2.app.report import build_report
from tests.conftest import small_spec


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed on CI (`make test` installs it through `make browser`)")
    pytest.skip("chromium not installed; `make browser` installs Debian's package (root)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A two-stage recipe run: a compiled plan and its plot, with metrics a trainer would write."""
    tmp = tmp_path_factory.mktemp("report")
    spec = tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump(small_spec()))
    stages = [
        {"name": "plan", "help": "compile the mixture", "config": str(spec), "outputs": ["{run_dir}/plan"],
         "run": ["mix", "plan", "{config}", "-o", "{run_dir}/plan/plan.json", "--quiet"]},
        {"name": "plot", "after": ["plan"], "outputs": ["{run_dir}/plot"],
         "run": ["mix", "plot", "{run_dir}/.recipe/configs/plan.yaml", "-o", "{run_dir}/plot/mixture.png"]},
    ]  # fmt: skip
    recipe = tmp / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "report-test", "run_dir": str(tmp / "run"), "stages": stages}))
    Runner(load_recipe(recipe), recipe).run()
    train = tmp / "run" / "parent"
    train.mkdir()
    with (train / "metrics.jsonl").open("w") as f:
        for step in range(1, 41):
            f.write(json.dumps({"step": step, "loss": 8.0 / step**0.3, "phase": "p1" if step <= 24 else "p2"}) + "\n")
    return tmp / "run"


def test_report_has_every_section_and_real_numbers(run_dir):
    html_path, md_path = build_report(run_dir)
    md = md_path.read_text()
    for title in ("Stages and wall time", "Data funnel", "Mixture per phase", "Training curves", "Lineage"):
        assert f"## {title}" in md
    assert re.search(r"\| plan \| done \| [\d.]+ \| compile the mixture \|", md)
    assert "| parent | 40 | 40 |" in md
    assert (md_path.parent / "figures" / "stage_times.png").stat().st_size > 2000
    assert (md_path.parent / "figures" / "loss_curves.png").stat().st_size > 2000
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") >= 2
    assert "src='figures/" not in page  # self-contained: every image is embedded


def test_report_loads_in_headless_chromium(run_dir, tmp_path):
    chromium = _chromium()
    html_path, _ = build_report(run_dir)
    shot = tmp_path / "report.png"
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    common.append(f"--user-data-dir={tmp_path / 'profile'}")
    proc = subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,1800", html_path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 20_000  # a blank page is a few KB
    dom = subprocess.run([*common, "--dump-dom", html_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0
    assert "<h1>nano2 recipe report: run</h1>" in dom.stdout
    assert dom.stdout.count("<section") == 10
    assert "ERR_FILE_NOT_FOUND" not in dom.stderr
