"""The pretraining loop: three phases on the plan, realised tokens == plan (manifest and audit), exact resume after a
stop or a kill, the loss_fn interface, and bad configs as one clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mixtures.compiler import compile_plan
from mixtures.sources import resolve_sources
from mixtures.spec import load_spec
from nano2.contracts.chat import IGNORE_INDEX
from nano2.errors import ConfigError, Nano2Error
from nano2.manifest import read_manifest
from tests.test_train_support import (
    build_corpus,
    tokenize_corpus,
    torch_threads,
    train_config,
    train_spec,
    write_yaml,
)
from train.config import TrainConfig, load_train_config
from train.loop import run_training
from train.plot import read_metrics

REPO = Path(__file__).resolve().parent.parent
STEPS = 20


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_tokenizer_dir):
    root = tmp_path_factory.mktemp("loop")
    tokens = tokenize_corpus(build_corpus(root / "corpus"), root / "tokens", tiny_tokenizer_dir)
    spec = write_yaml(root / "spec.yaml", train_spec(seq_len=32, batch=4, steps=STEPS))
    cfg = train_config(spec, tokens, tiny_tokenizer_dir, checkpoint_every=5, plot=True, micro_batch_size=4)
    config_path = write_yaml(root / "train.yaml", cfg)
    return root, spec, tokens, config_path


@pytest.fixture(scope="module")
def full_run(setup):
    """One uninterrupted run: the reference for every other test here."""
    root, _, _, config_path = setup
    result = run_training(
        load_train_config(config_path), out_dir=root / "full", config_path=config_path, progress=False
    )
    return result, root / "full"


def independent_plan(spec_path: Path, tokens: Path):
    spec = load_spec(spec_path)
    counts, origins = resolve_sources(spec, tokens)
    return compile_plan(spec, counts, origins)


def test_three_phases_on_the_plan_and_the_loss_falls(setup, full_run):
    _, spec_path, tokens, _ = setup
    result, out = full_run
    plan = independent_plan(spec_path, tokens)
    records = read_metrics(out / "metrics.jsonl")
    assert result.completed and result.steps_done == plan.total_steps == STEPS == len(records)
    assert [r["phase"] for r in records] == [plan.phase_at_step(r["step"]).name for r in records]
    assert [r["step"] for r in records[1:] if r["phase"] != records[r["step"] - 1]["phase"]] == [12, 18]
    for phase in plan.phases:  # the sources each step read, summed per phase, are the plan's sequences
        drawn: dict[str, int] = {}
        for r in records[phase.start_step : phase.end_step]:
            for name, n in r["sequences"].items():
                drawn[name] = drawn.get(name, 0) + n
        assert drawn == {a.name: a.sequences for a in phase.sources if a.sequences}
    losses = [r["loss"] for r in records]
    assert losses[0] == pytest.approx(torch.log(torch.tensor(4096.0)).item(), abs=0.3)  # random init: ~ln(vocab)
    assert sum(losses[-4:]) / 4 < losses[0] - 1.0
    assert records[-1]["lr"] == pytest.approx(3.0e-4) and records[2]["lr"] == pytest.approx(3.0e-3)
    assert (out / "loss.png").stat().st_size > 10_000


def test_final_manifest_records_realised_tokens_equal_to_the_plan(setup, full_run):
    _, spec_path, tokens, _ = setup
    _, out = full_run
    plan = independent_plan(spec_path, tokens)
    manifest = read_manifest(out)
    assert manifest.kind == "checkpoint" and manifest.name == "test-run"
    realised = {(r["phase"], r["source"]): r["tokens"] for r in manifest.extra["realised"]}
    planned = {(p.name, a.name): a.tokens for p in plan.phases for a in p.sources}
    assert realised == planned
    assert manifest.extra["completed"] and manifest.extra["architecture"] == "tiny-12b"
    inputs = {Path(i.path).name for i in manifest.inputs}
    assert {"spec.yaml", "code", "level=high", "level=medium"} <= inputs
    assert {f.path for f in manifest.files} >= {"model.safetensors", "metrics.jsonl", "plan.json", "tokenizer.json"}
    from model.io import load_checkpoint

    assert load_checkpoint(out).config.vocab_size == 4096


def test_audit_query_compares_plan_and_realised(setup, full_run):
    from nano2.app.audit import Audit

    root = setup[0]
    db = Audit(root)
    sql = db.saved_queries()["70_plan_vs_realised"].read_text()
    rows = db.query(sql).fetchall()
    cols = db.query(sql).columns
    rows = [dict(zip(cols, r, strict=True)) for r in rows]
    full = [r for r in rows if r["run"] == "test-run" and r["realised_tokens"] is not None]
    assert len(full) == 8 and {r["status"] for r in full} == {"ok"}  # 3 + 3 + 2 (phase, source) pairs
    assert all(r["planned_tokens"] == r["realised_tokens"] for r in full)


def test_stop_and_resume_gives_the_uninterrupted_losses_exactly(setup, full_run):
    root, _, _, config_path = setup
    _, full = full_run
    cfg = load_train_config(config_path)
    out = root / "stopped"
    first = run_training(cfg, out_dir=out, config_path=config_path, stop_at_step=12, progress=False)
    assert not first.completed and first.steps_done == 12 and not (out / "manifest.json").exists()
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step-00000005", "step-00000010"]
    with pytest.raises(Nano2Error, match="already holds a run; pass --resume"):
        run_training(cfg, out_dir=out, config_path=config_path, progress=False)
    changed = cfg.model_copy(update={"seed": cfg.seed + 1})
    with pytest.raises(ConfigError, match="started with another config"):  # a resume never mixes two runs
        run_training(changed, out_dir=out, config_path=config_path, resume=True, progress=False)
    resumed = run_training(cfg, out_dir=out, config_path=config_path, resume=True, progress=False)  # from step 10
    assert resumed.completed
    assert read_metrics(out / "metrics.jsonl") == [
        {**r, "step_s": s["step_s"], "tokens_per_s": s["tokens_per_s"]}
        for r, s in zip(read_metrics(full / "metrics.jsonl"), read_metrics(out / "metrics.jsonl"), strict=True)
    ]
    a, b = load_file(full / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    before = (out / "model.safetensors").stat().st_mtime_ns
    again = run_training(cfg, out_dir=out, config_path=config_path, resume=True, progress=False)
    assert again.completed and again.losses == resumed.losses  # a finished run is not trained again
    assert (out / "model.safetensors").stat().st_mtime_ns == before


def test_killed_process_resumes_to_the_same_losses(setup, full_run):
    root, _, _, config_path = setup
    _, full = full_run
    out = root / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nano2 = Path(sys.executable).with_name("nano2")
    proc = subprocess.Popen(
        [str(nano2), "train", "pretrain", str(config_path), "-o", str(out), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "step-00000005").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode != 0, proc.stderr.read().decode()
    resumed = run_training(load_train_config(config_path), out_dir=out, config_path=config_path, resume=True)
    assert resumed.completed
    assert [r["loss"] for r in read_metrics(out / "metrics.jsonl")] == [
        r["loss"] for r in read_metrics(full / "metrics.jsonl")
    ]


def test_custom_loss_fn_and_model(setup, full_run, tiny_tokenizer_dir):
    from model.configs import get_config
    from model.io import build_model

    root, _, _, config_path = setup
    _, full = full_run
    data = load_train_config(config_path).model_dump()
    data["model"] = None
    cfg = TrainConfig.model_validate(data)
    passed = build_model(get_config("tiny-12b"), seed=0)
    seen = []

    def loss_fn(model, input_ids, labels):
        seen.append((model, tuple(input_ids.shape)))
        logits = model(input_ids=input_ids, use_cache=False).logits
        ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        return ce, {"targets": float((labels != IGNORE_INDEX).sum()), "ce_copy": ce.detach()}

    result = run_training(cfg, model=passed, loss_fn=loss_fn, out_dir=root / "custom", stop_at_step=3, progress=False)
    assert result.steps_done == 3
    assert all(m is passed for m, _ in seen) and {s for _, s in seen} == {(4, 32)}  # micro-batch 4 x seq 32
    records = read_metrics(root / "custom" / "metrics.jsonl")
    reference = read_metrics(full / "metrics.jsonl")[:3]
    assert [r["targets"] for r in records] == [4 * 31] * 3  # 4 x (32 - 1) targets per micro-batch
    assert [r["ce_copy"] for r in records] == pytest.approx([r["loss"] for r in records], rel=1e-12)
    assert [r["loss"] for r in records] == pytest.approx([r["loss"] for r in reference], rel=1e-6)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"micro_batch_size": 3}, "micro_batch_size", "does not split"),
        ({"schedule": {"kind": "wsd", "lr": 1e-3, "warmup_steps": 15, "decay_steps": 10}}, "schedule", "longer than"),
        (
            {"data": {"spec": "SPEC", "data_root": "TOKENS", "sources": {"wiki": "wiki"}}},
            "data.sources.wiki",
            "no source",
        ),
        ({"model": {"name": "tiny-13b"}}, "model.name", "unknown model config"),
        ({"data": {"spec": "SPEC", "data_root": "TOKENS", "total_tokens": 64}}, "data.total_tokens", "less than one"),
    ],
)
def test_run_time_config_errors_name_the_file_and_field(setup, tmp_path, change, field, message):
    _, spec, tokens, config_path = setup
    data = json.loads(json.dumps(load_train_config(config_path).model_dump(mode="json")))
    for key, value in change.items():
        if isinstance(value, dict) and "spec" in value:
            value = {**value, "spec": str(spec), "data_root": str(tokens)}
        data[key] = value
    path = write_yaml(tmp_path / "bad.yaml", data)
    with pytest.raises(ConfigError) as err:
        run_training(load_train_config(path), out_dir=tmp_path / "out", config_path=path, progress=False)
    assert err.value.file == str(path) and err.value.field == field and message in err.value.detail
    assert not (tmp_path / "out").exists()


def test_config_file_errors_through_the_cli(cli, setup, tmp_path):
    _, _, _, config_path = setup
    text = config_path.read_text().replace("micro_batch_size: 4", "micro_batch_size: 4\nmicro_batch: 4")
    bad = tmp_path / "typo.yaml"
    bad.write_text(text)
    res = cli("train", "pretrain", bad, "-o", tmp_path / "out")
    assert res.code == 2
    assert res.err.startswith(f"error: {bad}: micro_batch: unknown key; expected one of: name, output_dir, model")
    both = tmp_path / "both.yaml"
    both.write_text(config_path.read_text().replace("data:\n", "data:\n  plan: plan.json\n"))
    res = cli("train", "pretrain", both)
    assert res.code == 2 and f"{both}: data: give exactly one of `plan`" in res.err


def test_activation_checkpointing_bf16_and_fp8_options(setup, full_run, capsys):
    root, _, _, config_path = setup
    _, full = full_run
    reference = [r["loss"] for r in read_metrics(full / "metrics.jsonl")[:2]]
    base = load_train_config(config_path)
    recompute = base.model_copy(update={"activation_checkpointing": True})
    from model.configs import get_config
    from model.io import build_model

    model = build_model(get_config("tiny-12b"), seed=0)
    calls: dict[int, int] = {}
    for i, block in enumerate(model.model.layers):
        block.norm.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls.get(i, 0) + 1))
    run_training(recompute, model=model, out_dir=root / "recompute", stop_at_step=2, progress=False)
    assert set(calls.values()) == {4}  # 2 steps x (forward + recompute in backward) in every block
    assert [r["loss"] for r in read_metrics(root / "recompute" / "metrics.jsonl")] == pytest.approx(reference, rel=1e-6)
    precision = base.precision.model_copy(
        update={"bf16": True, "fp8": base.precision.fp8.model_copy(update={"enabled": True})}
    )
    low = base.model_copy(update={"precision": precision})
    capsys.readouterr()
    run_training(low, out_dir=root / "bf16", stop_at_step=2, progress=False)
    assert "fp8: skipped on CPU" in capsys.readouterr().out
    assert [r["loss"] for r in read_metrics(root / "bf16" / "metrics.jsonl")] == pytest.approx(reference, rel=0.02)
