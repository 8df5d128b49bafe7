"""The Slurm path of curation, synthesis and tokenization, end to end on this machine: stand-in `sbatch`, `squeue`,
`srun` and `scontrol` on PATH (tests/slurm_standin) record every script datatrove submits and run it here."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from curation.executors import ExecutorConfig
from curation.web.config import load_web_config
from curation.web.pipeline import run_web
from nano2.manifest import read_manifest
from synthetic.runner import run_synthesis
from tests.test_synth_shards import LoggingBackend, _config, _rows
from tests.test_train_tokenize_tasks import six_file_corpus
from train.tokenize import tokenize_inputs

STANDIN = Path(__file__).parent / "slurm_standin"
REPO = Path(__file__).resolve().parent.parent
SLURM = {"kind": "slurm", "tasks": 2, "workers": 2, "slurm": {"partition": "standin", "time": "00:30:00"}}

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="the stand-in scripts need bash")


@pytest.fixture
def slurm(tmp_path, monkeypatch) -> Path:
    """Stand-ins first on PATH (then the venv's console scripts: launch_pickled_pipeline, merge_stats)."""
    state = tmp_path / "slurm"
    monkeypatch.setenv("PATH", os.pathsep.join([str(STANDIN), str(Path(sys.executable).parent), os.environ["PATH"]]))
    monkeypatch.setenv("SLURM_STANDIN_DIR", str(state))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    return state


def _jobs(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) | {"script": p.with_suffix(".sbatch").read_text()}
            for p in sorted((state / "jobs").glob("*.json"))]  # fmt: skip


def _pipeline_jobs(state: Path) -> list[dict]:
    return [job for job in _jobs(state) if "launch_pickled_pipeline" in job["script"]]


def test_tokenize_on_slurm_matches_a_local_run(slurm, tmp_path, tiny_tokenizer_dir):
    web = six_file_corpus(tmp_path / "data")
    executor = ExecutorConfig.model_validate(SLURM)
    [report] = tokenize_inputs([web], tmp_path / "slurm-tokens", tiny_tokenizer_dir, data_root=web.parent.parent,
                               show_progress=False, executor=executor)  # fmt: skip
    tokenize_inputs([web], tmp_path / "local", tiny_tokenizer_dir, data_root=web.parent.parent, show_progress=False)
    local = read_manifest(tmp_path / "local/curated/web")
    assert read_manifest(tmp_path / "slurm-tokens/curated/web").stats.by == local.stats.by
    assert report.tokens == local.stats.tokens > 0
    [job] = _pipeline_jobs(slurm)
    assert job["array"] == "0-1%2" and job["exit_codes"] == [0, 0]
    assert "#SBATCH --partition=standin" in job["script"] and "srun" in job["script"]


def test_synthesis_on_slurm_matches_a_local_run(slurm, tmp_path, shared_data):
    from tests.test_synth_pipeline import gsm8k_gold_by_question

    gold = gsm8k_gold_by_question(shared_data, 20)
    cfg = _config(shared_data, tmp_path / "slurm-run", tasks=2, workers=2, long_context={"enabled": False})
    cfg = cfg.model_copy(update={"executor": ExecutorConfig.model_validate(SLURM)})
    result = run_synthesis(cfg, backend_factory=lambda: LoggingBackend(gold, tmp_path / "slurm.log"))
    local = _config(shared_data, tmp_path / "local", tasks=1, workers=1, long_context={"enabled": False})
    run_synthesis(local, backend_factory=lambda: LoggingBackend(gold, tmp_path / "local.log"))
    assert not result.submitted and set(result.manifests) == set(cfg.enabled_stages())
    assert _rows(cfg) == _rows(local)
    jobs = _pipeline_jobs(slurm)
    assert len(jobs) == 2 * len(cfg.enabled_stages())  # shards + merge per stage, chained by afterok
    assert all(job["exit_codes"] and not any(job["exit_codes"]) for job in jobs)
    assert all(any(a.startswith("--dependency=afterok:") for a in job["args"]) for job in jobs[1:])


def test_curation_on_slurm_writes_the_documents_of_a_local_run(slurm, tmp_path, shared_data):
    import duckdb

    def config(executor: dict, name: str) -> Path:
        cfg = {
            "name": "web-slurm", "output_dir": str(tmp_path / name / "curated"),
            "work_dir": str(tmp_path / name / "work"),
            "inputs": [{"kind": "jsonl", "path": str(shared_data / "web"), "glob": "ccnet_cc_en_head_0091.jsonl"}],
            "executor": executor, "dedup": {"minhash": {"enabled": False}},
        }  # fmt: skip
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def documents(name: str) -> list[tuple]:
        files = [str(p) for p in (tmp_path / name / "curated").rglob("*.parquet") if ".decisions" not in str(p)]
        return duckdb.sql(f"SELECT id, md5(text), metadata.level FROM read_parquet({files}) ORDER BY id").fetchall()

    on_slurm = config(SLURM, "slurm")
    assert run_web(load_web_config(on_slurm), on_slurm) == {}  # submitted (the stand-in ran every job already)
    jobs = _pipeline_jobs(slurm)
    assert len(jobs) >= 5 and all(job["exit_codes"] and not any(job["exit_codes"]) for job in jobs)
    assert "manifests" in jobs[-1]["script"]  # the last job of the chain writes the manifests
    local = config({"kind": "local", "tasks": 2, "workers": 1}, "local")
    run_web(load_web_config(local), local)
    assert documents("slurm") == documents("local") and len(documents("local")) > 3
    for artifact in ("web", "math", "multilingual"):
        on_cluster, here = (read_manifest(tmp_path / name / "curated" / artifact) for name in ("slurm", "local"))
        assert on_cluster.stats.documents == here.stats.documents and on_cluster.stats.by == here.stats.by
    # the submitted run's state can be finished or inspected locally (same tasks): nothing is refused or redone
    finish = config({"kind": "local", "tasks": 2, "workers": 1}, "slurm")
    assert set(run_web(load_web_config(finish), finish)) == {"web", "math", "multilingual", "decisions"}
    assert documents("slurm") == documents("local")
