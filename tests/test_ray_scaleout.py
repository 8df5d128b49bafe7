"""Synthesis and tokenization on a local Ray cluster give a local run's rows and token counts (slow; skipped
without the `ray` extra)."""

from __future__ import annotations

import pytest

from curation.executors import ExecutorConfig
from nano2.manifest import read_manifest
from synthetic.runner import run_synthesis
from tests.test_synth_shards import LoggingBackend, _config, _rows
from tests.test_train_tokenize_tasks import six_file_corpus
from train.tokenize import tokenize_inputs

ray = pytest.importorskip("ray", reason="the Ray executor needs the `ray` extra: pip install 'nano2-recipe[ray]'")
pytestmark = [pytest.mark.slow]
RAY = {"kind": "ray", "tasks": 2, "workers": 2, "ray": {"cpus_per_task": 1, "mem_per_cpu_gb": 0.5}}


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_tokenize_on_ray_matches_a_local_run(tmp_path, tiny_tokenizer_dir):
    web = six_file_corpus(tmp_path / "data")
    root = web.parent.parent
    tokenize_inputs([web], tmp_path / "ray", tiny_tokenizer_dir, data_root=root, show_progress=False,
                    executor=ExecutorConfig.model_validate(RAY))  # fmt: skip
    tokenize_inputs([web], tmp_path / "local", tiny_tokenizer_dir, data_root=root, show_progress=False)
    local = read_manifest(tmp_path / "local/curated/web")
    assert read_manifest(tmp_path / "ray/curated/web").stats.by == local.stats.by and local.stats.tokens > 0


@pytest.mark.realdata
def test_synthesis_on_ray_matches_a_local_run(tmp_path, shared_data):
    from tests.test_synth_pipeline import gsm8k_gold_by_question

    gold = gsm8k_gold_by_question(shared_data, 20)
    cfg = _config(shared_data, tmp_path / "ray", tasks=2, workers=2, long_context={"enabled": False})
    cfg = cfg.model_copy(update={"executor": ExecutorConfig.model_validate(RAY)})
    run_synthesis(cfg, backend_factory=lambda: LoggingBackend(gold, tmp_path / "ray.log"))
    local = _config(shared_data, tmp_path / "local", tasks=1, workers=1, long_context={"enabled": False})
    run_synthesis(local, backend_factory=lambda: LoggingBackend(gold, tmp_path / "local.log"))
    assert _rows(cfg) == _rows(local)
