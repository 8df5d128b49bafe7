"""The whole web pipeline on the real shared samples: outputs, manifests, audit, resume after a kill, Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from curation.web.config import WebConfig, load_web_config
from curation.web.pipeline import run_web
from curation.web.routing import ARTIFACTS
from nano2.app.audit import Audit
from nano2.contracts.documents import DOCUMENT_SCHEMA
from nano2.contracts.shards import decisions_dir
from nano2.manifest import read_manifest

pytestmark = pytest.mark.realdata


def _config(tmp: Path, shared: Path, *, html_pages: int, classifiers: list[dict] | None, tasks: int = 2) -> Path:
    cfg = {
        "name": "web-test",
        "output_dir": str(tmp / "curated"),
        "work_dir": str(tmp / "work"),
        "inputs": [
            {"kind": "warc", "path": str(shared / "web"), "glob": "*.warc.gz"},
            {
                "kind": "jsonl",
                "path": str(shared / "web"),
                "glob": "trafilatura_eval_dev.jsonl.gz",
                "text_key": "html",
                "html": True,
                "limit": html_pages,
            },
        ],
        "executor": {"kind": "local", "tasks": tasks, "workers": 1},
        "url_filter": {
            "banned_subwords_files": [str(shared / "web/banlists/refinedweb_banned_words_hard_reverse_engineered.txt")]
        },
        "quality": {"classifiers": classifiers or []},
    }
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "web.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _final_documents(out: Path) -> list[tuple[str, str, str]]:
    files = [str(p) for artifact in ARTIFACTS for p in (out / artifact).rglob("*.parquet")]
    rows = duckdb.sql(
        f"SELECT id, md5(text), coalesce(metadata.level, metadata.language) FROM read_parquet({files}) ORDER BY id"
    ).fetchall()
    return rows


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory, shared_data):
    """The tiny quality classifiers, trained once for the module (seeded, in a subprocess)."""
    from curation.quality.training import tiny_config, train_quality

    out = tmp_path_factory.mktemp("quality")
    cfg = tiny_config()
    train_quality(cfg, out, data_root=shared_data)
    return [{"name": c.name, "path": str(out / c.name)} for c in cfg.classifiers]


def test_full_pipeline_outputs_and_audit(tmp_path, shared_data, classifiers, cli):
    config = _config(tmp_path, shared_data, html_pages=60, classifiers=classifiers)
    result = cli("curate", "web", config)
    assert result.code == 0, result.err
    out = tmp_path / "curated"
    web = read_manifest(out / "web")
    multi = read_manifest(out / "multilingual")
    assert web.stats.documents > 5 and multi.stats.documents > 5
    assert set(web.stats.by["level"]) <= {"low", "medium-low", "medium", "medium-high", "high"}
    assert len(web.stats.by["level"]) >= 3
    assert web.stats.by["subset"].keys() == web.stats.by["level"].keys()
    assert "de" in multi.stats.by["language"] and multi.stats.by["subset"].keys() == multi.stats.by["language"].keys()
    assert web.stats.tokenizer == multi.stats.tokenizer and web.stats.tokenizer.startswith("default@")
    # one layout: every shard is `<artifact>/subset=<value>/<rank>.parquet` of the document contract, and the
    # decisions live beside web/ (a manifest of kind decisions), never inside a document folder
    shards = [p.relative_to(out) for artifact in ARTIFACTS for p in (out / artifact).rglob("*.parquet")]
    assert shards and all(len(p.parts) == 3 and p.parts[1].startswith("subset=") for p in shards)
    assert {p.name for p in shards} <= {"00000.parquet", "00001.parquet"}
    assert all(pq.read_schema(out / p).equals(DOCUMENT_SCHEMA) for p in shards)
    drops = read_manifest(decisions_dir(out / "web"))
    assert decisions_dir(out / "web") == out / "web.decisions" and drops.kind == "decisions" and drops.stats.documents
    steps = [s["step"] for s in web.extra["steps"]]
    assert any("Language ID" in s for s in steps) and any("MinHash" in s for s in steps)
    thresholds = web.extra["quality_thresholds"]
    assert set(thresholds["classifiers"]) == {c["name"] for c in classifiers}
    # every English document carries its bucket, level, per-classifier scores, language, tokens and URL
    files = [str(p) for p in (out / "web").rglob("*.parquet")]
    row = duckdb.sql(
        f"SELECT metadata.bucket, metadata.level, metadata.quality, metadata.language, token_count, "
        f"metadata.url FROM read_parquet({files}) LIMIT 1"
    ).fetchall()[0]
    assert 0 <= row[0] <= 19 and row[1] and len(row[2]) == 2 and row[3] == "en" and row[4] > 0 and row[5]
    assert row[0] == max(entry["bucket"] for entry in row[2])
    # the audit sees documents by level and language and drops by step and reason
    db = Audit(out)
    by_source = dict(db.query("SELECT source, count(*) FROM documents GROUP BY 1").fetchall())
    assert any(s.startswith("web-test-web/subset=") for s in by_source)
    assert any(s.startswith("web-test-multilingual/subset=de") for s in by_source)
    drops = db.query("SELECT step, reason, count(*) FROM decisions WHERE NOT kept GROUP BY ALL").fetchall()
    assert {step for step, _, _ in drops} >= {"read", "language", "heuristics"}
    # the mixture spec can read the partition token counts from the manifest
    from mixtures.sources import read_source_tokens

    level = next(iter(web.stats.by["subset"]))
    assert read_source_tokens(out, f"web/subset={level}")[0] == web.stats.by["subset"][level].tokens


def _run_in_subprocess(config: Path) -> subprocess.Popen:
    code = (
        "import sys; from curation.web.config import load_web_config; from curation.web.pipeline import run_web; "
        "run_web(load_web_config(sys.argv[1]), sys.argv[1])"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def test_resume_after_a_kill_gives_the_same_output(tmp_path, shared_data):
    reference_cfg = _config(tmp_path / "ref", shared_data, html_pages=20, classifiers=None, tasks=4)
    run_web(load_web_config(reference_cfg), reference_cfg)
    reference = _final_documents(tmp_path / "ref" / "curated")
    assert len(reference) > 10

    config = _config(tmp_path / "killed", shared_data, html_pages=20, classifiers=None, tasks=4)
    proc = _run_in_subprocess(config)
    completions = tmp_path / "killed" / "work" / "logs" / "extract" / "completions"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if completions.exists() and 1 <= len(list(completions.iterdir())) < 4:
            os.killpg(proc.pid, signal.SIGKILL)  # kill the run (and its workers) in the middle of stage 1
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    killed_mid_run = proc.returncode == -signal.SIGKILL
    done_before = len(list(completions.iterdir())) if completions.exists() else 0
    run_web(load_web_config(config), config)  # the rerun resumes: finished tasks are skipped
    assert _final_documents(tmp_path / "killed" / "curated") == reference
    assert killed_mid_run and 1 <= done_before < 4, "the run was not interrupted mid-stage: the test proved nothing"


def test_config_errors_name_the_field(tmp_path, write_spec):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"output_dir": "o", "work_dir": "w", "inputs": [{"kind": "arc", "path": "x"}]}))
    with pytest.raises(Exception, match=r"inputs\[0\]\.kind"):
        load_web_config(bad)


@pytest.mark.slow
def test_ray_executor_local_cluster(tmp_path, shared_data):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'nano2-recipe[ray]')")
    config = _config(tmp_path, shared_data, html_pages=10, classifiers=None, tasks=2)
    cfg = load_web_config(config)
    cfg = WebConfig.model_validate({**cfg.model_dump(), "executor": {"kind": "ray", "tasks": 2, "workers": 2}})
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        run_web(cfg, config)
    finally:
        ray.shutdown()
    assert _final_documents(tmp_path / "curated")
    assert read_manifest(tmp_path / "curated" / "web").stats.documents > 0
