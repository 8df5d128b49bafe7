"""End to end on CPU with a real (random-init) tiny checkpoint: `nano2 synth run` on a copy of the tiny config with
the local backend, and a run through the HTTP backend against a `nano2 synth serve` process that is killed
mid-way and rerun, with the requests counted on the server side.

A random model writes gibberish, so these tests assert the mechanics (requests sent, every request a row or a
counted drop, manifests of the right kind in the right root, reruns that send nothing), not kept-row counts;
truncate_traces needs no model and must write rows."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from nano2.manifest import read_manifest
from synthetic.config import REPHRASE_TASKS
from synthetic.records import read_chat_rows
from tests.test_synth_backends import start_server, stop_server
from tests.test_synth_pipeline import write_curated

pytestmark = pytest.mark.realdata

KNOWN_DROPS = {
    "output_truncated", "empty_output", "empty_response", "no_qa_pairs", "text_before_first_question",
    "question_without_answer", "answer_without_question", "empty_question", "empty_answer", "too_short",
    "copied_input", "repetitive_output", "no_bullets", "text_outside_list", "duplicate_bullets", "unclosed_think",
    "nested_think", "empty_trace", "no_final_answer", "wrong_answer", "answer_unparseable", "no_code_block",
    "tests_failed", "no_valid_qa", "document_too_short", "no_quality_bucket", "within_budget",
    "no_line_boundary_within_budget", "duplicate_questions", "no_usable_samples", "no_chosen", "no_rejected",
    "chosen_equals_rejected",
}  # fmt: skip


def tiny_config(shared_data: Path, tmp_path: Path, checkpoint: Path) -> Path:
    """synthetic/configs/tiny.yaml pointed at the test checkpoint, small real inputs and a few output tokens."""
    cfg = yaml.safe_load(Path("synthetic/configs/tiny.yaml").read_text(encoding="utf-8"))
    curated = write_curated(shared_data, tmp_path / "curated" / "web", max_chars=300)
    cfg["output_dir"] = str(tmp_path / "synthetic")
    cfg["chat_dir"] = str(tmp_path / "chat")
    cfg["backend"]["model"] = str(checkpoint)
    cfg["batch_size"] = 4
    cfg["rephrase"]["inputs"] = [{"path": str(curated), "limit": 2}]  # buckets 19 and 5: 4 + 1 requests
    for task in cfg["rephrase"]["tasks"].values():
        task["max_output_tokens"] = 4
    cfg["translate"]["settings"]["max_output_tokens"] = 4
    cfg["reasoning"]["inputs"][0]["limit"] = 1
    cfg["reasoning"]["inputs"][1]["limit"] = 1
    cfg["reasoning"]["settings"]["max_output_tokens"] = 4
    cfg["preference"]["inputs"][0]["limit"] = 1
    cfg["preference"]["inputs"][1]["limit"] = 1
    cfg["preference"]["settings"]["max_output_tokens"] = 4
    cfg["truncate"]["gold_inputs"][0]["limit"] = 20
    cfg["long_context"].update(inputs=[{"path": str(curated), "limit": 2}], min_document_tokens=40, chunk_tokens=64,
                               max_documents=1)  # fmt: skip
    cfg["long_context"]["settings"]["max_output_tokens"] = 4
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def stage_manifests(tmp_path: Path) -> dict:
    """The stage manifests of both roots (decisions folders, which have their own manifests, left out)."""
    roots = (tmp_path / "synthetic", tmp_path / "chat")
    dirs = [d for root in roots for d in root.iterdir() if (d / "manifest.json").exists()]
    return {d.name: read_manifest(d) for d in dirs if not d.name.endswith(".decisions")}


def test_tiny_config_end_to_end_with_the_local_backend(shared_data, tmp_path, tiny_checkpoint_dir, cli):
    config = tiny_config(shared_data, tmp_path, tiny_checkpoint_dir)
    result = cli("synth", "run", config)
    assert result.code == 0, result.err
    manifests = stage_manifests(tmp_path)
    assert set(manifests) == {"rephrase", "translate", "reasoning", "preference", "truncated", "long_context"}
    kinds = {name: m.kind for name, m in manifests.items()}
    assert kinds == {"rephrase": "documents", "translate": "documents", "long_context": "documents",
                     "reasoning": "chat", "truncated": "chat", "preference": "preference"}  # fmt: skip
    requests = {name: m.extra["requests"] for name, m in manifests.items()}
    assert requests["rephrase"]["sent"] == 5 and requests["reasoning"]["sent"] == 2
    assert requests["preference"]["sent"] == 8  # 2 problems x 4 samples
    assert requests["long_context"]["sent"] >= 1 and requests["truncated"]["jobs"] == 0
    for name, m in manifests.items():
        assert m.extra["backend"]["kind"] == "local" and m.extra["synthetic_stage"]
        drops = {reason for reasons in m.extra["drops"].values() for reason in reasons}
        assert drops <= KNOWN_DROPS, drops
        dropped = sum(n for task, reasons in m.extra["drops"].items() if task != "routing" for n in reasons.values())
        if name in ("rephrase", "reasoning"):
            assert m.stats.documents + dropped == requests[name]["jobs"]  # every request: a row or a counted drop
        if name == "preference":
            assert m.stats.documents + dropped == 2  # every problem: a row or a counted drop
    assert manifests["translate"].extra["requests"]["jobs"] == 0 or manifests["rephrase"].stats.by["task"].get(
        "diverse_qa"
    )
    truncated = read_chat_rows(tmp_path / "chat" / "truncated")
    assert truncated and all(r["metadata"]["kept_tokens"] <= r["metadata"]["budget"] <= 48 for r in truncated)
    assert all(r["messages"][-1]["content"].rstrip().endswith("}") for r in truncated)  # \boxed{N} kept
    files = {name: [(f.path, f.sha256) for f in m.files] for name, m in manifests.items()}
    again = cli("synth", "run", config)
    assert again.code == 0, again.err
    assert "0 sent" in again.out
    rerun = stage_manifests(tmp_path)
    assert {name: [(f.path, f.sha256) for f in m.files] for name, m in rerun.items()} == files
    assert all(m.extra["requests"]["sent"] == 0 for m in rerun.values())
    stats = cli("synth", "stats", config)
    assert stats.code == 0 and "truncate_traces" in stats.out


def _answers(cache: Path) -> int:
    if not cache.exists():
        return 0
    try:
        with sqlite3.connect(cache, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM answers").fetchall()[0][0]
    except sqlite3.OperationalError:  # created but the table not there yet
        return 0


@pytest.mark.slow  # two subprocesses (a server and a run): ~30 s on an idle 2-core machine
def test_killed_http_run_resumes_without_duplicate_requests(shared_data, tmp_path, tiny_checkpoint_dir, cli):
    server, url = start_server(tiny_checkpoint_dir, "--model-name", "teacher")
    try:
        curated = write_curated(shared_data, tmp_path / "curated" / "web", max_chars=200)
        config = {
            "name": "synth-http",
            "output_dir": str(tmp_path / "synthetic"),
            "chat_dir": str(tmp_path / "chat"),
            "backend": {"kind": "openai", "base_url": url, "model": "teacher", "backoff_s": 0.01, "concurrency": 1},
            "batch_size": 1,
            "rephrase": {"enabled": True, "inputs": [{"path": str(curated), "limit": 3}],  # 4 + 1 + 4 requests
                         "tasks": {t: {"max_output_tokens": 6, "temperature": 0.0} for t in REPHRASE_TASKS}},
        }  # fmt: skip
        path = tmp_path / "http.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        cache = tmp_path / "synthetic" / ".cache" / "requests.sqlite"
        run = subprocess.Popen(
            [sys.executable, "-c", "from nano2.app.cli import main; main()", "synth", "run", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while _answers(cache) < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        committed = _answers(cache)
        served_at_kill = httpx.get(url + "/stats").json()["requests"]
        assert 2 <= committed < 9, "the kill must land mid-run (9 requests in all)"
        assert served_at_kill - committed <= 1  # at most the one request in flight was answered but not committed
        resumed = cli("synth", "run", path)
        assert resumed.code == 0, resumed.err
        manifest = read_manifest(tmp_path / "synthetic" / "rephrase")
        assert manifest.extra["requests"] == {**manifest.extra["requests"], "jobs": 9, "cached": committed,
                                              "sent": 9 - committed}  # fmt: skip
        served_after = httpx.get(url + "/stats").json()["requests"]
        assert served_after - served_at_kill == 9 - committed  # counted on the server: nothing answered is re-sent
        assert _answers(cache) == 9
        assert cli("synth", "run", path).code == 0
        assert httpx.get(url + "/stats").json()["requests"] == served_after  # a third run sends nothing
    finally:
        stop_server(server)
