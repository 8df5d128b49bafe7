"""The request cache: every answered request, stored once, so a killed run resumes without re-sending anything.

A request's key hashes (task, prompt version, prompt text hash, model, sampling parameters, source document id,
sample index): change any of them and the request is new; keep them and the stored answer is reused. Answers
are committed per batch in one SQLite transaction (WAL journal), so a kill loses at most the batch in flight and
never leaves a half-written answer. Failed requests (backend errors after retries) are appended to a separate
table with their error: they are recorded, not answers, so the next run sends them again (`retry_failed`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from synthetic.backends.base import GenerationResponse

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, task TEXT, prompt_version TEXT, model TEXT, source_id TEXT, sample_index INTEGER,
    sampling TEXT, texts TEXT, finish_reasons TEXT, prompt_tokens INTEGER, completion_tokens TEXT, attempts INTEGER,
    created REAL
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT, task TEXT, source_id TEXT, error TEXT, attempts INTEGER, created REAL
);
CREATE INDEX IF NOT EXISTS failures_key ON failures (key);
"""


def request_key(
    *,
    task: str,
    prompt_version: str,
    prompt_hash: str,
    model: str,
    sampling: Mapping[str, Any],
    source_id: str,
    sample_index: int,
) -> str:
    fields = {
        "task": task,
        "prompt_version": prompt_version,
        "prompt_hash": prompt_hash,
        "model": model,
        "sampling": dict(sampling),
        "source_id": source_id,
        "sample_index": sample_index,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class RequestCache:
    """SQLite store of answers (by key) and failures (appended)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)
        self.conn.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, GenerationResponse]:
        out: dict[str, GenerationResponse] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "SELECT key, texts, finish_reasons, prompt_tokens, completion_tokens, attempts "
                f"FROM answers WHERE key IN ({marks})",
                chunk,
            ).fetchall()
            for key, texts, reasons, prompt_tokens, completion, attempts in rows:
                out[key] = GenerationResponse(
                    key=key,
                    texts=json.loads(texts),
                    finish_reasons=json.loads(reasons),
                    prompt_tokens=prompt_tokens,
                    completion_tokens=json.loads(completion),
                    attempts=attempts,
                )
        return out

    def failed_keys(self, keys: Sequence[str]) -> dict[str, str]:
        """The last recorded error of each key that failed before (and has no answer)."""
        out: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, error in self.conn.execute(
                f"SELECT key, error FROM failures WHERE key IN ({marks}) ORDER BY created", chunk
            ).fetchall():
                out[key] = error
        return out

    def store(self, records: Iterable[tuple[dict[str, Any], GenerationResponse]]) -> None:
        """Answers and failures of one batch, in one transaction; `dict` holds the key fields of the request."""
        now = time.time()
        answers, failures = [], []
        for fields, r in records:
            if r.ok:
                answers.append(
                    (
                        r.key, fields["task"], fields["prompt_version"], fields["model"], fields["source_id"],
                        fields["sample_index"], json.dumps(fields["sampling"], sort_keys=True), json.dumps(r.texts),
                        json.dumps(r.finish_reasons), r.prompt_tokens, json.dumps(r.completion_tokens), r.attempts, now,
                    )
                )  # fmt: skip
            else:
                failures.append((r.key, fields["task"], fields["source_id"], r.error, r.attempts, now))
        with self.conn:
            if answers:
                self.conn.executemany(
                    "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", answers
                )
            if failures:
                self.conn.executemany("INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?)", failures)

    def counts(self) -> dict[str, int]:
        answers = self.conn.execute("SELECT count(*) FROM answers").fetchall()[0][0]
        failures = self.conn.execute("SELECT count(*) FROM failures").fetchall()[0][0]
        return {"answers": answers, "failures": failures}

    def close(self) -> None:
        self.conn.close()
