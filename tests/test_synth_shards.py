"""Sharded synthesis (`synthetic.shards`): 4 tasks on 2 workers write the rows a one-task run writes, and a task
killed mid-stage resumes alone, re-sending only its own uncommitted requests."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from curation.executors import ExecutorConfig
from nano2.manifest import read_manifest
from synthetic.config import DOCUMENT_STAGES, SynthConfig
from synthetic.records import read_chat_rows, read_documents
from synthetic.runner import run_synthesis
from tests.test_synth_pipeline import Crash, ScriptedBackend, gsm8k_gold_by_question, make_config

pytestmark = pytest.mark.realdata


class LoggingBackend(ScriptedBackend):
    """Appends the key of every request it answered to a file (shared by all worker processes), and can be killed
    once: the first batch holding `trigger` raises instead of answering (a marker file makes it happen once), after
    the other tasks of the stage completed (datatrove's local pool stops the tasks still running when one fails;
    on a cluster the others run on regardless)."""

    def __init__(
        self, gold: dict[str, str], log: Path, trigger: str | None = None, marker: Path | None = None,
        completions: Path | None = None, others: int = 0,
    ):  # fmt: skip
        super().__init__(gold)
        self.log, self.trigger, self.marker = log, trigger, marker
        self.completions, self.others = completions, others

    def generate(self, requests):
        hit = self.trigger is not None and any(self.trigger in r.messages[-1]["content"] for r in requests)
        if hit and not self.marker.exists():
            self.marker.touch()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (
                not self.completions.is_dir() or len(list(self.completions.iterdir())) < self.others
            ):
                time.sleep(0.05)
            raise Crash("killed in the middle of a shard")
        answers = super().generate(requests)
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write("".join(r.key + "\n" for r in requests))
        return answers


def _config(shared_data: Path, root: Path, tasks: int, workers: int, **overrides) -> SynthConfig:
    cfg = make_config(shared_data, root, **overrides)
    return cfg.model_copy(update={"executor": ExecutorConfig(tasks=tasks, workers=workers)})


def _rows(cfg: SynthConfig) -> dict[str, list[str]]:
    out = {}
    for stage in cfg.enabled_stages():
        directory = cfg.stage_dir(stage)
        rows = read_documents(directory) if stage in DOCUMENT_STAGES else read_chat_rows(directory)
        out[stage] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
    return out


def _sent(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def _cached(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {k for (k,) in conn.execute("SELECT key FROM answers")}


def test_four_tasks_on_two_workers_write_the_rows_of_one_task(tmp_path, shared_data):
    gold = gsm8k_gold_by_question(shared_data, 20)
    one = _config(shared_data, tmp_path / "one", tasks=1, workers=1)
    four = _config(shared_data, tmp_path / "four", tasks=4, workers=2)
    run_synthesis(one, backend_factory=lambda: LoggingBackend(gold, tmp_path / "one.log"))
    result = run_synthesis(four, backend_factory=lambda: LoggingBackend(gold, tmp_path / "four.log"))
    assert _rows(one) == _rows(four)
    assert sum(len(rows) for rows in _rows(four).values()) > 20
    for stage in one.enabled_stages():
        a, b = read_manifest(one.stage_dir(stage)), read_manifest(four.stage_dir(stage))
        assert a.stats == b.stats and a.extra["drops"] == b.extra["drops"], stage
        assert len(b.extra["shards"]) == 4
        assert b.extra["requests"]["sent"] == a.extra["requests"]["sent"]
    assert sorted(_sent(tmp_path / "one.log")) == sorted(_sent(tmp_path / "four.log"))  # each request once
    assert result.requests.sent == len(_sent(tmp_path / "four.log"))
    caches = sorted((Path(four.output_dir) / ".cache").glob("requests-*-of-00004.sqlite"))
    assert len(caches) == 4 and sum(len(_cached(c)) for c in caches) == len(_sent(tmp_path / "four.log"))


def test_a_killed_shard_resumes_alone_and_resends_only_its_uncommitted_requests(tmp_path, shared_data):
    gold = gsm8k_gold_by_question(shared_data, 20)
    cfg = _config(shared_data, tmp_path / "run", tasks=4, workers=2, long_context={"enabled": False}, batch_size=2)
    trigger = list(gold)[9]  # a GSM8K question: its shard dies when the batch holding it is sent
    log, marker = tmp_path / "sent.log", tmp_path / "killed"
    completions = cfg.shard_logs("reasoning") / "shards" / "completions"

    def killing() -> LoggingBackend:
        return LoggingBackend(gold, log, trigger, marker, completions, others=3)

    with pytest.raises(Exception):  # noqa: B017 - datatrove re-raises the failed task's error in its own wrapper
        run_synthesis(cfg, backend_factory=killing)
    assert marker.exists()
    first_run = _sent(log)
    caches = sorted((Path(cfg.output_dir) / ".cache").glob("requests-*-of-00004.sqlite"))
    before = {c.name: _cached(c) for c in caches}
    assert len(list(completions.iterdir())) == 3  # the other three reasoning shards finished
    log.rename(tmp_path / "first.log")
    result = run_synthesis(cfg, backend_factory=lambda: LoggingBackend(gold, log))
    resent = set(_sent(log))
    after = {c.name: _cached(c) for c in caches}
    grown = [name for name in after if after[name] != before[name]]
    assert len(grown) == 1  # only the killed shard's cache got answers
    assert resent == after[grown[0]] - before[grown[0]] and resent  # exactly its requests never committed
    assert not resent & set(first_run)  # nothing answered (and committed) before was sent again
    assert result.manifests["reasoning"].extra["rows"] == len(_rows(cfg)["reasoning"]) > 0
    reference = _config(shared_data, tmp_path / "ref", tasks=1, workers=1, long_context={"enabled": False})
    run_synthesis(reference, backend_factory=lambda: LoggingBackend(gold, tmp_path / "ref.log"))
    assert _rows(reference) == _rows(cfg)
