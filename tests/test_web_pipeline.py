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
    assert 0 <= row[0] <= 19 and row[1] and len(row[2]) == len(classifiers) and row[3] == "en" and row[4] > 0 and row[5]
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


# --- empty results: nothing survives a step, the run still ends with empty artifacts and the reason ---------------


def _gold_pages(shared: Path) -> list[dict]:
    import gzip
    import json

    with gzip.open(shared / "web" / "trafilatura_eval_dev.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _one_record_warc(path: Path, url: str, html: str) -> None:
    from io import BytesIO

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.0")
        record = writer.create_warc_record(url, "response", payload=BytesIO(html.encode()), http_headers=http)
        writer.write_record(record)


def _empty_case(case: str, inputs: Path, shared: Path) -> tuple[dict, str]:
    """Write the input of one case; return its input spec and the reason the decisions must hold (or '')."""
    pages = _gold_pages(shared)
    if case == "empty_warc":
        (inputs / "empty.warc").write_bytes(b"")
        return {"kind": "warc", "path": str(inputs)}, ""
    if case == "one_german_page":  # the language ID keeps en and fr only: a German page has nowhere to go
        page = next(p for p in pages if "html_raw_b64" not in p and "Größe" in p["html"] and ".de/" in p["url"])
        _one_record_warc(inputs / "one.warc.gz", page["url"], page["html"])
        return {"kind": "warc", "path": str(inputs)}, "language_de"
    if case == "lone_10mb_page":  # a real page's body repeated to 10 MB
        page = next(p for p in pages if "html_raw_b64" not in p and len(p["html"]) > 50_000)
        html = page["html"] * (10_000_000 // len(page["html"]) + 1)
        _one_record_warc(inputs / "big.warc.gz", page["url"], html)
        return {"kind": "warc", "path": str(inputs)}, "too_large"
    assert case == "broken_jsonl"  # real CCNet rows, every line cut in the middle
    lines = (shared / "web" / "ccnet_cc_en_head_0091.jsonl").read_text(encoding="utf-8").splitlines()
    (inputs / "cut.jsonl").write_text("".join(line[: len(line) // 2] + "\n" for line in lines), encoding="utf-8")
    return {"kind": "jsonl", "path": str(inputs), "glob": "*.jsonl"}, "malformed_json"


@pytest.mark.parametrize("case", ["empty_warc", "one_german_page", "lone_10mb_page", "broken_jsonl"])
def test_nothing_left_is_an_empty_result(tmp_path, shared_data, cli, case):
    inputs = tmp_path / "in"
    inputs.mkdir()
    spec, reason = _empty_case(case, inputs, shared_data)
    cfg = {
        "name": "empty", "output_dir": str(tmp_path / "curated"), "work_dir": str(tmp_path / "work"),
        "inputs": [spec], "executor": {"kind": "local", "tasks": 1, "workers": 1},
        "language": {"english": True, "multilingual": ["fr"]}, "quality": {"classifiers": []},
    }  # fmt: skip
    config = tmp_path / "web.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = cli("curate", "web", config)
    assert result.code == 0, result.err
    out = tmp_path / "curated"
    for artifact in ARTIFACTS:
        manifest = read_manifest(out / artifact)
        assert manifest.stats.documents == 0 and manifest.stats.tokens == 0
        assert manifest.extra["empty_reason"].startswith("nothing left after extract")
    drops = read_manifest(decisions_dir(out / "web"))
    assert drops.extra["empty_reason"] == read_manifest(out / "web").extra["empty_reason"]
    if reason:
        assert reason in drops.extra["empty_reason"]
        rows = Audit(out).query("SELECT reason FROM decisions WHERE NOT kept").fetchall()
        assert rows and all(r == (reason,) for r in rows)
    else:
        assert drops.stats.documents == 0 and "held no document" in drops.extra["empty_reason"]
    assert "nothing left after extract" in result.out


def test_a_rerun_with_other_inputs_is_refused_unless_fresh(tmp_path, shared_data, cli):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    lines = (shared_data / "web" / "ccnet_cc_en_head_0091.jsonl").read_text(encoding="utf-8").splitlines()
    (first / "a.jsonl").write_text(lines[0] + "\n", encoding="utf-8")
    (second / "b.jsonl").write_text(lines[1] + "\n", encoding="utf-8")

    def config(folder: Path) -> Path:
        cfg = {
            "name": "rerun", "output_dir": str(tmp_path / "curated"), "work_dir": str(tmp_path / "work"),
            "inputs": [{"kind": "jsonl", "path": str(folder)}], "quality": {"classifiers": []},
            "executor": {"kind": "local", "tasks": 1, "workers": 1}, "dedup": {"minhash": {"enabled": False}},
        }  # fmt: skip
        path = tmp_path / f"{folder.name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    assert cli("curate", "web", config(first)).code == 0
    assert cli("curate", "web", config(first)).code == 0  # the same config resumes
    refused = cli("curate", "web", config(second))
    assert refused.code == 2 and "--fresh" in refused.err and len(refused.err.strip().splitlines()) == 1
    fresh = cli("curate", "web", config(second), "--fresh")
    assert fresh.code == 0, fresh.err
    files = [str(p) for a in ARTIFACTS for p in (tmp_path / "curated" / a).rglob("*.parquet")]
    ids = {row[0] for row in duckdb.sql(f"SELECT source FROM read_parquet({files})").fetchall()}
    assert ids and all("b.jsonl" in source for source in ids)  # nothing of the first input is left
