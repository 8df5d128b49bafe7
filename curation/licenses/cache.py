"""Detections cached by git blob hash, so a file seen in a thousand forks is scanned once.

Two levels: an in-process LRU (always), and optionally a SQLite file shared by the workers of a machine and by
later runs (`cache_path` in the config). Keys are (settings fingerprint, kind, blob hash): changing the ScanCode
version or the detection settings starts a fresh namespace. Only clean answers (`license`, `none`) are persisted;
a timeout or an error may not happen again with more time, so it is remembered for this process only.

Writers never hold SQLite's write lock while they work: new rows wait in memory and go in with one short
transaction every `flush_every` rows (and at close), so concurrent workers do not lock each other out. The
SQLite file is an optimisation: if it cannot be read or written (locked for too long, corrupt, a full disk), the
cache says so once in `errors` and carries on in memory, and the task goes on.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import OrderedDict
from pathlib import Path

from curation.licenses.detector import Detection

PERSISTED_STATUSES = ("license", "none")


class DetectionCache:
    """get/put detections by (kind, blob hash); `hits`/`misses` count lookups for the step's stats."""

    def __init__(self, path: str | Path | None = None, max_memory_entries: int = 200_000, flush_every: int = 200):
        self.path = Path(path) if path else None
        self.max_memory_entries = max_memory_entries
        self.flush_every = flush_every
        self._memory: OrderedDict[tuple[str, str, str], Detection] = OrderedDict()
        self._pending: list[tuple[str, str, str, str]] = []
        self._db: sqlite3.Connection | None = None
        self._db_pid: int | None = None
        self.disabled_reason: str | None = None
        self.hits = 0
        self.misses = 0

    def _connection(self) -> sqlite3.Connection | None:
        if self.path is None or self.disabled_reason is not None:
            return None
        if self._db is None or self._db_pid != os.getpid():  # a forked worker opens its own connection
            if self._db_pid is not None and self._db_pid != os.getpid():
                self._pending = []  # rows queued before the fork are the parent's to write
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)  # autocommit; explicit transactions
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS detections (namespace TEXT, kind TEXT, blob TEXT, detection TEXT, "
                "PRIMARY KEY (namespace, kind, blob))"
            )
            self._db, self._db_pid = db, os.getpid()
        return self._db

    def _disable(self, exc: Exception) -> None:
        self.disabled_reason = f"{type(exc).__name__}: {exc}"
        self._db, self._pending = None, []

    def get(self, namespace: str, kind: str, blob: str | None) -> Detection | None:
        if not blob:
            return None
        key = (namespace, kind, blob)
        found = self._memory.get(key)
        if found is None:
            try:
                db = self._connection()
                row = db.execute(
                    "SELECT detection FROM detections WHERE namespace=? AND kind=? AND blob=?", key
                ).fetchone() if db is not None else None  # fmt: skip
            except sqlite3.Error as exc:
                self._disable(exc)
                row = None
            if row is not None:
                found = Detection.from_dict(json.loads(row[0]))
                self._remember(key, found)
        if found is None:
            self.misses += 1
            return None
        self._memory.move_to_end(key)
        self.hits += 1
        return found

    def put(self, namespace: str, kind: str, blob: str | None, detection: Detection) -> None:
        if not blob:
            return
        key = (namespace, kind, blob)
        self._remember(key, detection)
        if detection.status in PERSISTED_STATUSES and self.path is not None and self.disabled_reason is None:
            self._pending.append((*key, json.dumps(detection.to_dict())))
            if len(self._pending) >= self.flush_every:
                self.flush()

    def flush(self) -> None:
        """Write the pending rows in one short transaction."""
        if not self._pending:
            return
        try:
            db = self._connection()
            if db is None:
                return
            rows, self._pending = self._pending, []
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO detections VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._disable(exc)

    def _remember(self, key: tuple[str, str, str], detection: Detection) -> None:
        self._memory[key] = detection
        if len(self._memory) > self.max_memory_entries:
            self._memory.popitem(last=False)

    def close(self) -> None:
        if self._db is not None and self._db_pid == os.getpid():
            self.flush()
            if self._db is not None:
                self._db.close()
        self._db = None
        self._pending = []
