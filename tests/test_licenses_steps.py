"""The code pipeline's license stage as datatrove steps: repositories in, kept files out, drops in the decisions
table."""

from __future__ import annotations

import time

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from curation.code.license_stage import FileLicenseFilter, RepositoryLicenses, evidence_documents, repositories
from curation.decisions import DecisionsWriter
from curation.licenses.detector import DetectorSettings, LicenseDetector, load_index
from nano2.contracts.documents import Meta
from nano2.contracts.shards import step_decisions_dir

GPL_HEADER = "# SPDX-License-Identifier: GPL-2.0-only\n"
MIT_HEADER = "# SPDX-License-Identifier: MIT\n"
SETTINGS = DetectorSettings(header_deadline_s=5, file_deadline_s=20)


@pytest.fixture(scope="session")
def scancode_index():
    return load_index()


@pytest.fixture(scope="session")
def mit_license(scancode_index) -> str:
    """A real MIT license file: the text from ScanCode's license database, with a copyright line."""
    from licensedcode.cache import get_licenses_db

    return "Copyright (c) 2024 The Authors\n\n" + get_licenses_db()["mit"].text


def doc(repo: str, path: str, text: str, **metadata) -> Document:
    meta = {Meta.REPO: repo, Meta.PATH: path, Meta.SIZE: len(text), Meta.BLOB_HASH: f"{repo}/{path}/{hash(text)}",
            "input_issue": None, **metadata}  # fmt: skip
    return Document(text=text, id=f"{repo}/{path}", metadata=meta)


def run_license_stage(docs: list[Document], tmp_path) -> tuple[dict[str, Document], dict[str, dict]]:
    """Kept documents by id, and the decisions rows by doc id."""
    writer = DecisionsWriter(str(tmp_path), "license")
    pipeline = [RepositoryLicenses(SETTINGS), FileLicenseFilter(SETTINGS, exclusion_writer=writer)]
    data = iter(docs)
    for step in pipeline:
        data = step.run(data, rank=0, world_size=1)
    kept = {d.id: d for d in data}
    rows = {}
    for file in step_decisions_dir(tmp_path, "license").glob("*.parquet"):
        rows.update({r["doc_id"]: r for r in pq.read_table(file).to_pylist()})
    return kept, rows


def test_repositories_are_grouped_by_consecutive_repo():
    docs = [doc("a", "1", ""), doc("a", "2", ""), doc("b", "1", ""), doc("a", "3", "")]
    assert [(repo, len(group)) for repo, group in repositories(iter(docs))] == [("a", 2), ("b", 1), ("a", 1)]


def test_gpl_file_in_mit_repo_dropped_and_mit_header_in_gpl_repo_kept(mit_license, tmp_path):
    docs = [
        doc("mit-repo", "LICENSE", mit_license),
        doc("mit-repo", "src/ok.py", "def f():\n    return 1\n"),
        doc("mit-repo", "src/gpl_part.py", GPL_HEADER + "def g():\n    return 2\n"),
        doc("gpl-repo", "COPYING", "# SPDX-License-Identifier: GPL-3.0-only\nGNU GENERAL PUBLIC LICENSE\n"),
        doc("gpl-repo", "lib/mit_helper.py", MIT_HEADER + "def h():\n    return 3\n"),
        doc("gpl-repo", "lib/core.py", "def core():\n    return 4\n"),
        doc("bare-repo", "main.py", "print('hi')\n"),
    ]
    kept, rows = run_license_stage(docs, tmp_path)
    assert set(kept) == {"mit-repo/LICENSE", "mit-repo/src/ok.py", "gpl-repo/lib/mit_helper.py"}
    assert kept["mit-repo/src/ok.py"].metadata["license_spdx"] == "MIT"
    assert kept["mit-repo/src/ok.py"].metadata["license_source"] == "license_file"
    assert kept["mit-repo/src/ok.py"].metadata["license_source_path"] == "LICENSE"
    assert kept["gpl-repo/lib/mit_helper.py"].metadata["license_source"] == "header"
    assert rows["mit-repo/src/gpl_part.py"]["reason"] == "license_not_permissive"
    assert '"gpl-2.0"' in rows["mit-repo/src/gpl_part.py"]["scores"]
    assert rows["gpl-repo/lib/core.py"]["reason"] == "license_not_permissive"
    assert rows["bare-repo/main.py"]["reason"] == "no_license"
    assert all(row["kept"] is False and row["step"] == "license" for row in rows.values())


def test_scancode_crash_or_timeout_drops_with_reason_and_the_task_goes_on(mit_license, tmp_path, monkeypatch):
    real = LicenseDetector._scancode_scan

    def flaky(self, text, approximate, unknown):
        if "CRASH" in text:
            raise MemoryError("ScanCode ran out of memory")
        if "SLOW" in text:  # CPU time: deadlines count computing, not waiting
            end = time.process_time() + 1.5
            while time.process_time() < end:
                pass
        return real(self, text, approximate, unknown)

    monkeypatch.setattr(LicenseDetector, "_scancode_scan", flaky)
    settings = DetectorSettings(header_deadline_s=0.2, file_deadline_s=20)
    docs = [
        doc("r", "LICENSE", mit_license),
        doc("r", "crash.py", "# CRASH\nx = 1\n"),
        doc("r", "slow.py", "# SLOW\ny = 2\n"),
        doc("r", "fine.py", "z = 3\n"),
        doc("s", "LICENSE", "CRASH\n" + mit_license),
        doc("s", "code.py", "w = 4\n"),
    ]
    writer = DecisionsWriter(str(tmp_path), "license")
    data = RepositoryLicenses(settings).run(iter(docs))
    kept = {d.id for d in FileLicenseFilter(settings, exclusion_writer=writer).run(data)}
    assert kept == {"r/LICENSE", "r/fine.py"}
    rows = {r["doc_id"]: r for f in step_decisions_dir(tmp_path, "license").glob("*.parquet")
            for r in pq.read_table(f).to_pylist()}  # fmt: skip
    assert rows["r/crash.py"]["reason"] == "license_error" and "MemoryError" in rows["r/crash.py"]["scores"]
    assert rows["r/slow.py"]["reason"] == "license_timeout"
    assert rows["s/code.py"]["reason"] == "license_error"  # its LICENSE could not be read: no fallback


def test_unreadable_license_files_block_their_directory(mit_license, tmp_path):
    docs = [
        doc("r", "LICENSE", mit_license),
        doc("r", "fonts/LICENSE", "", input_issue="too_large"),
        doc("r", "fonts/build.py", "a = 1\n"),
        doc("r", "bin/LICENSE.pdf", "", input_issue="binary"),
        doc("r", "bin/run.py", "b = 2\n"),
        doc("r", "node_modules/x/LICENSE", "", input_issue="vendored_path"),
        doc("r", "tools/t.py", "c = 3\n"),
    ]
    kept, rows = run_license_stage(docs, tmp_path)
    assert rows["r/fonts/build.py"]["reason"] == "license_file_too_large"
    assert rows["r/bin/run.py"]["reason"] == "license_file_binary"
    assert "r/tools/t.py" in kept  # vendored trees govern only themselves


def test_license_files_that_govern_no_keepable_file_are_not_scanned(mit_license):
    docs = [
        doc("r", "LICENSE", mit_license),
        doc("r", "src/a.py", "a = 1\n"),
        doc("r", "data/licenses/gpl-2.0.LICENSE", "GPL text"),
        doc("r", "data/licenses/mit.LICENSE", "MIT text"),
        doc("r", "assets/COPYING", "fonts"),
        doc("r", "assets/logo.png", "", input_issue="binary"),
        doc("r", "docs/LICENSE", "CC-BY-4.0"),
        doc("r", "docs/README.md", "# Docs\n"),  # a license candidate that may itself be kept as Markdown
    ]
    kept = [d.metadata["path"] for d in evidence_documents(docs)]
    assert kept == ["LICENSE", "docs/LICENSE", "docs/README.md"]


def test_blob_cache_scans_a_fork_once(mit_license, tmp_path):
    license_text = mit_license
    docs = []
    for fork in range(3):
        docs += [doc(f"fork{fork}", "LICENSE", license_text, blob_hash="same-license"),
                 doc(f"fork{fork}", "a.py", "x = 1\n", blob_hash="same-code")]  # fmt: skip
    step = RepositoryLicenses(SETTINGS, cache_path=str(tmp_path / "c.sqlite"))
    filt = FileLicenseFilter(SETTINGS, cache_path=str(tmp_path / "c.sqlite"))
    kept = list(filt.run(step.run(iter(docs))))
    assert len(kept) == 6
    assert step.stats["license_file_scans"].total == 1 and step.stats["license_file_cache_hits"].total == 2
    assert filt.stats["header_scans"].total == 2 and filt.stats["header_cache_hits"].total == 4
