"""samples.jsonl, the resumable record of a run: one line per generated sample, appended as samples finish.

A kill loses at most the line being written: a cut line is dropped (and rewritten away) on the next load, and its
sample is generated again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evals.plan import PlannedItem

SAMPLES_FILE = "samples.jsonl"


class SampleStore:
    """samples.jsonl as a dict keyed by (benchmark, item id, sample, settings); appends survive a kill."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[tuple[str, str, int, str], dict[str, Any]] = {}
        self.dropped_lines = 0
        if path.is_file():
            self._load()

    @staticmethod
    def key_of(record: Mapping[str, Any]) -> tuple[str, str, int, str]:
        return (record["benchmark"], record["item_id"], int(record["sample"]), record["settings"])

    def _load(self) -> None:
        good_lines = []
        unterminated = False
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                unterminated = not line.endswith("\n")
                try:
                    record = json.loads(line)
                    key = self.key_of(record)
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    self.dropped_lines += 1  # a line cut by a kill: its sample is generated again
                    continue
                self.records[key] = record
                good_lines.append(line if line.endswith("\n") else line + "\n")
        if self.dropped_lines or unterminated:  # appending after a cut line would corrupt the next record
            self.path.write_text("".join(good_lines), encoding="utf-8")

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.records[self.key_of(record)] = record

    def rewrite(self) -> None:
        with self.path.open("w", encoding="utf-8") as handle:
            for record in self.records.values():
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def item_samples(planned: PlannedItem, store: SampleStore) -> list[dict[str, Any]]:
    """The stored samples of one planned item, in sample order (missing ones left out)."""
    return [r for i in range(planned.sampling.n) if (r := store.records.get(planned.key(i))) is not None]
