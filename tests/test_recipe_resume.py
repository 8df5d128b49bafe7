"""Runs a user can trust: a killed `nano2 run` resumes its stage (pretraining from its checkpoint, synthesis from
its request cache) and ends where an uninterrupted run ends; one runner per run dir; a stage is stale exactly when
code it ran changed; a broken cached output re-runs its stage; `-j 2` gives what `-j 1` gives."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

import nano2.app.recipe as recipe_module
from nano2.app.recipe import Runner, load_recipe
from nano2.errors import Nano2Error
from tests.conftest import small_spec
from tests.test_train_support import build_corpus, tokenize_corpus, torch_threads, train_config, train_spec, write_yaml
from train.config import load_train_config
from train.loop import run_training
from train.plot import read_metrics

NANO2 = [sys.executable, "-c", "from nano2.app.cli import main; main()"]


def _write_recipe(path: Path, run_dir: Path, stages: list[dict]) -> Path:
    # one OpenMP thread in every stage, as recipes/tiny.yaml: the same arithmetic whichever process runs a step
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    path.write_text(yaml.safe_dump({"name": "t", "run_dir": str(run_dir), "env": env, "stages": stages}))
    return path


def _start_runner(recipe: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*NANO2, "run", str(recipe), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"runner ended before {what}: {proc.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def _state(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / ".recipe" / "state" / f"{stage}.json").read_text())


# ------------------------------------------------------------------------------------------- pretraining


@pytest.fixture(scope="module")
def pretrain_setup(tmp_path_factory, tiny_tokenizer_dir):
    root = tmp_path_factory.mktemp("resume")
    tokens = tokenize_corpus(build_corpus(root / "corpus"), root / "tokens", tiny_tokenizer_dir)
    spec = write_yaml(root / "spec.yaml", train_spec(seq_len=32, batch=4, steps=20))
    cfg = train_config(spec, tokens, tiny_tokenizer_dir, checkpoint_every=5, micro_batch_size=4)
    config_path = write_yaml(root / "train.yaml", cfg)
    with torch_threads(1):
        reference = run_training(load_train_config(config_path), out_dir=root / "reference", progress=False)
    return root, config_path, reference


def test_killed_runner_resumes_pretraining_and_locks_the_run_dir(pretrain_setup, tmp_path):
    _, config_path, reference = pretrain_setup
    run_dir = tmp_path / "run"
    out = run_dir / "parent" / "pretrain"
    recipe = _write_recipe(
        tmp_path / "recipe.yaml",
        run_dir,
        [
            {
                "name": "pretrain",
                "run": ["train", "pretrain", "{config}", "--resume", "--no-progress"],
                "config": str(config_path),
                "overrides": {"output_dir": str(out)},
                "outputs": [str(out)],
                "resumable": True,
            }
        ],
    )
    runner = _start_runner(recipe)
    _wait_for(lambda: (out / "checkpoints" / "step-00000005").exists(), runner, "checkpoint at step 5")

    second = subprocess.run([*NANO2, "run", str(recipe)], capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    assert f"pid {runner.pid}" in second.stderr and "in use" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr

    runner.send_signal(signal.SIGKILL)  # the runner only: its stage dies with it
    runner.wait()
    listed = Runner(load_recipe(recipe), recipe)
    assert listed.status_now(listed.recipe.stage("pretrain")) == "interrupted"

    results = Runner(load_recipe(recipe), recipe).run()
    assert [r.status for r in results] == ["ran"]
    assert results[0].note.startswith("resumed: kept"), results[0].note
    log = (run_dir / ".recipe" / "logs" / "pretrain.log").read_text()
    assert "resuming" in log and "from step" in log and "starting from step 0" not in log
    assert _state(run_dir, "pretrain")["status"] == "done"
    resumed_losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl")]
    assert resumed_losses == reference.losses  # the same run an uninterrupted one is
    again = Runner(load_recipe(recipe), recipe).run()
    assert [r.status for r in again] == ["skipped"]


# ------------------------------------------------------------------------------------------- synthesis


@pytest.mark.slow  # a model server and two runs: ~40 s on an idle 2-core machine
@pytest.mark.realdata
def test_killed_runner_resumes_synthesis_without_resending(shared_data, tmp_path, tiny_checkpoint_dir):
    from synthetic.config import REPHRASE_TASKS
    from tests.test_synth_backends import start_server, stop_server
    from tests.test_synth_pipeline import write_curated

    server, url = start_server(tiny_checkpoint_dir, "--model-name", "teacher")
    try:
        curated = write_curated(shared_data, tmp_path / "curated" / "web", max_chars=200)
        run_dir = tmp_path / "run"
        config = tmp_path / "synth.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "name": "synth-http",
                    "output_dir": "overridden",
                    "chat_dir": "overridden",
                    "backend": {"kind": "openai", "base_url": url, "model": "teacher", "backoff_s": 0.01},
                    "batch_size": 1,
                    "rephrase": {
                        "enabled": True,
                        "inputs": [{"path": str(curated), "limit": 3}],  # 4 + 1 + 4 requests
                        "tasks": {t: {"max_output_tokens": 6, "temperature": 0.0} for t in REPHRASE_TASKS},
                    },
                }
            )
        )
        stage = {
            "name": "synthesize",
            "run": ["synth", "run", "{config}"],
            "config": str(config),
            "overrides": {"output_dir": "{run_dir}/data/synthetic", "chat_dir": "{run_dir}/chat/synthetic"},
            "outputs": ["{run_dir}/data/synthetic"],  # rephrasing only: documents, no chat rows
            "resumable": True,
        }
        recipe = _write_recipe(tmp_path / "recipe.yaml", run_dir, [stage])
        served = lambda: httpx.get(url + "/stats").json().get("requests", 0)  # noqa: E731
        runner = _start_runner(recipe)
        _wait_for(lambda: served() >= 3, runner, "three answered requests")
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        time.sleep(0.5)  # the stage process gets SIGKILL from the kernel as its runner dies
        at_kill = served()
        assert at_kill < 9, "the kill must land mid-run (9 requests in all)"

        results = Runner(load_recipe(recipe), recipe).run()
        assert results[0].status == "ran" and results[0].note.startswith("resumed"), results[0].note
        sent_after = served() - at_kill
        assert sent_after <= 9 - at_kill + 1  # at most the request in flight at the kill is sent again
        assert sent_after < 9
    finally:
        stop_server(server)


# ------------------------------------------------------------------------------------------- fingerprints


def _mix_recipe(tmp_path: Path, spec_path: Path) -> Path:
    stages = [
        {
            "name": "plan",
            "run": ["mix", "plan", "{config}", "-o", "{run_dir}/plan/plan.json", "--quiet"],
            "config": str(spec_path),
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
    return _write_recipe(tmp_path / "recipe.yaml", tmp_path / "run", stages)


@pytest.fixture
def finished_mix_run(tmp_path, write_spec):
    recipe = _mix_recipe(tmp_path, write_spec(small_spec()))
    results = Runner(load_recipe(recipe), recipe).run(jobs=2)
    assert [r.status for r in results] == ["ran", "ran", "ran"]
    return recipe, tmp_path / "run"


def test_a_stage_is_stale_exactly_when_code_it_ran_changed(finished_mix_run, tmp_path, monkeypatch):
    recipe, run_dir = finished_mix_run
    records = {
        stage: set(json.loads(p.read_text())["files"])
        for stage in ("plan", "plot")
        for p in (run_dir / ".recipe" / "code" / stage).glob("*.json")
    }
    # recorded, not listed: the plan ran the compiler and nano2/units.py (what `300K` means); only plot ran plot.py
    assert {"mixtures/compiler.py", "nano2/units.py", "nano2/manifest.py"} <= records["plan"]
    plot_only = sorted(records["plot"] - records["plan"])
    assert any(f.startswith("mixtures/") for f in plot_only), plot_only

    # A copy of the repository's recorded files stands in for the checkout, so the test edits no real file.
    copy = tmp_path / "repo"
    for rel in records["plan"] | records["plot"]:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(recipe_module.REPO / rel, copy / rel)
    monkeypatch.setattr(recipe_module, "REPO", copy)
    would = lambda: Runner(load_recipe(recipe), recipe).would_run()  # noqa: E731
    assert would() == {"plan": False, "plot": False, "other": False}

    edited = copy / plot_only[0]
    edited.write_text(edited.read_text() + "\n# an edit\n")
    assert would() == {"plan": False, "plot": True, "other": False}  # only the stage that ran it

    units = copy / "nano2" / "units.py"
    units.write_text(units.read_text() + "\n# an edit\n")
    assert would() == {"plan": True, "plot": True, "other": True}  # every stage that imported it, and dependants


def test_a_truncated_manifest_re_runs_its_stage(finished_mix_run):
    recipe, run_dir = finished_mix_run
    manifest = run_dir / "plan" / "manifest.json"
    assert manifest.exists()
    manifest.write_text(manifest.read_text()[:40])
    runner = Runner(load_recipe(recipe), recipe)
    assert runner.would_run() == {"plan": True, "plot": False, "other": False}
    results = {r.name: r for r in runner.run()}
    assert results["plan"].status == "ran" and "cannot be trusted" in results["plan"].note
    assert json.loads(manifest.read_text())["kind"] == "plan"
    # plot reads the plan's config, not its manifest: a rebuilt, identical plan leaves it cached
    assert results["plot"].status == "skipped" and results["other"].status == "skipped"


def test_verify_catches_a_changed_file_of_the_same_size(finished_mix_run):
    recipe, run_dir = finished_mix_run
    plan = run_dir / "plan" / "plan.json"
    text = plan.read_text()
    flipped = text.replace("0", "1", 1) if "0" in text else text.replace("1", "0", 1)
    plan.write_text(flipped)
    assert Runner(load_recipe(recipe), recipe).would_run()["plan"] is False  # sizes match: not seen without --verify
    assert Runner(load_recipe(recipe), recipe, verify=True).would_run()["plan"] is True


def test_parallel_run_gives_what_a_sequential_run_gives(finished_mix_run, tmp_path):
    recipe, run_dir = finished_mix_run
    sequential = tmp_path / "sequential"
    results = Runner(load_recipe(recipe), recipe, run_dir=sequential).run(jobs=1)
    assert [r.status for r in results] == ["ran", "ran", "ran"]
    for rel in ("plan/plan.json", "other/plan.json"):
        assert json.loads((sequential / rel).read_text()) == json.loads((run_dir / rel).read_text())
    with pytest.raises(Nano2Error, match="jobs must be"):
        Runner(load_recipe(recipe), recipe).run(jobs=0)
