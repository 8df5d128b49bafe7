"""The shipped configs: every one loads; the tiny pretraining and long-context configs compile against a data root
shaped like runs/tiny/tokens and train (a few steps here) through the same loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_train_support import repo_documents, torch_threads, write_jsonl
from train.config import TrainConfig, load_train_config
from train.inputs import resolve_plan
from train.loop import run_training
from train.plot import read_metrics
from train.tokenize import tokenize_inputs

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "train" / "configs"
PRETRAIN_CONFIGS = ["tiny.yaml", "tiny-long-context.yaml", "nano2-12b-pretrain.yaml", "nano2-12b-long-context.yaml"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory, tiny_tokenizer_dir):
    """Real text at the five paths mixtures/specs/tiny.yaml names, tokenized like `nano2 train tokenize` would."""
    corpus = tmp_path_factory.mktemp("tiny-corpus")
    layout = {
        "curated/web/subset=medium": ("nano2", ".py", 12),
        "curated/web/subset=high": ("mixtures", ".py", 8),
        "curated/code": ("model", ".py", 8),
        "synthetic/rephrase": ("curation", ".py", 8),
        "chat/synthetic/reasoning": ("tests", ".py", 4),
    }
    for path, (package, suffix, limit) in layout.items():
        write_jsonl(corpus / path / "part-0.jsonl", repo_documents(package, suffix, limit))
    inputs = [corpus / p for p in ("curated/web", "curated/code", "synthetic/rephrase", "chat/synthetic/reasoning")]
    tokens = corpus.parent / f"{corpus.name}-tokens"
    tokenize_inputs(inputs, tokens, tiny_tokenizer_dir, data_root=corpus, show_progress=False)
    return tokens


def relocated(name: str, tokens: Path, **changes) -> TrainConfig:
    """A shipped config with its repository-relative paths made absolute and its data root replaced."""
    cfg = load_train_config(CONFIGS / name)
    data = cfg.data.model_copy(update={"spec": REPO / cfg.data.spec, "data_root": tokens})
    return cfg.model_copy(update={"data": data, **changes})


@pytest.mark.parametrize("name", PRETRAIN_CONFIGS)
def test_shipped_configs_load(name):
    cfg = load_train_config(CONFIGS / name)
    assert cfg.data.spec is not None and (REPO / cfg.data.spec).exists()


def test_tiny_config_compiles_the_tiny_spec_and_trains(tiny_root, tiny_tokenizer_dir, tmp_path):
    cfg = relocated("tiny.yaml", tiny_root, tokenizer=tiny_tokenizer_dir, plot=False)
    plan, _ = resolve_plan(cfg, CONFIGS / "tiny.yaml")
    assert (plan.seq_len, plan.global_batch_size, plan.total_steps) == (256, 8, 146)  # 300K tokens of the 2M spec
    assert [p.start_step for p in plan.phases] == [0, 88, 131]  # 60% and 90% of 146 steps, rounded half up
    assert plan.global_batch_size % cfg.micro_batch_size == 0
    result = run_training(cfg, out_dir=tmp_path / "run", stop_at_step=2, progress=False)
    assert result.steps_done == 2
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["phase"] for r in records] == ["phase1", "phase1"] and sum(records[0]["sequences"].values()) == 8


def test_a_spec_is_compiled_by_the_mixture_compiler(tiny_root, tmp_path):
    """train/ has no compiler of its own: its plan is `nano2 mix plan`'s, and a `data.total_tokens` budget gives the
    plan of the spec with that budget written in."""
    import yaml

    from mixtures import compile_spec_file

    cfg = relocated("tiny.yaml", tiny_root)
    spec = yaml.safe_load(cfg.data.spec.read_text(encoding="utf-8"))
    spec["total_tokens"] = cfg.data.total_tokens
    rewritten = tmp_path / "tiny-300K.yaml"
    rewritten.write_text(yaml.safe_dump(spec), encoding="utf-8")
    expected = compile_spec_file(rewritten, tiny_root)[1].to_json()

    plan, source = resolve_plan(cfg, None)
    assert source == cfg.data.spec and plan.to_json() == expected
    as_written = cfg.data.model_copy(update={"spec": rewritten, "total_tokens": None})
    plan, source = resolve_plan(cfg.model_copy(update={"data": as_written}), None)
    assert source == rewritten and plan.to_json() == expected


def test_tiny_long_context_config_continues_from_a_checkpoint(tiny_root, tiny_checkpoint_dir, tmp_path):
    cfg = relocated("tiny-long-context.yaml", tiny_root, plot=False)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"init_from": tiny_checkpoint_dir})})
    plan, _ = resolve_plan(cfg, CONFIGS / "tiny-long-context.yaml")
    assert plan.seq_len == 1024 and [p.name for p in plan.phases] == ["long-context"]
    schedule = cfg.schedule.build(plan.total_steps, plan.tokens_per_step)
    assert {schedule(s) for s in range(plan.total_steps)} == {2.0e-5}  # constant, the tiny pretraining's final rate
    result = run_training(cfg, out_dir=tmp_path / "lc", stop_at_step=1, progress=False)
    assert result.steps_done == 1
    (record,) = read_metrics(tmp_path / "lc" / "metrics.jsonl")
    assert record["tokens"] == 2 * 1024 and record["lr"] == 2.0e-5
    # the first step's loss is the checkpoint's own loss on the first planned batch: training started from it
    import torch

    from model.io import load_checkpoint
    from train.data import MixtureLoader
    from train.inputs import resolve_source_dirs
    from train.loop import next_token_loss

    batch = MixtureLoader(plan, resolve_source_dirs(plan, cfg, None), seed=cfg.data.seed).next_batch()
    with torch.no_grad():
        losses = [
            next_token_loss(
                load_checkpoint(tiny_checkpoint_dir), torch.from_numpy(ids[None]), torch.from_numpy(lab[None])
            )[0]
            for ids, lab in zip(batch.input_ids, batch.labels(), strict=True)
        ]
    assert record["loss"] == pytest.approx(float(sum(losses) / len(losses)), rel=1e-5)
