"""One test per rule of curation/licenses/POLICY.md, on ScanCode's real license texts and the real detector."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from datatrove.data import Document

from curation.code.languages import language_of
from curation.code.license_stage import FileLicenseFilter, RepositoryLicenses
from curation.code.reader import InputLimits, file_document
from curation.code.sources import RepositoriesSource, walk_directory
from curation.decisions import DecisionsWriter
from curation.licenses.candidates import candidate_kind
from curation.licenses.detector import Detection, DetectorSettings, LicenseDetector, ScanResult, load_index
from curation.licenses.resolution import Resolution, resolve_file
from nano2.contracts.documents import Meta
from nano2.contracts.shards import decisions_dir, step_decisions_dir
from nano2.manifest import MANIFEST_NAME, read_manifest

SETTINGS = DetectorSettings(header_deadline_s=5, file_deadline_s=20)


@pytest.fixture(scope="session")
def db():
    """ScanCode's license database (real license texts), with the index loaded."""
    load_index()
    from licensedcode.cache import get_licenses_db

    return get_licenses_db()


def doc(repo: str, path: str, text: str) -> Document:
    meta = {Meta.REPO: repo, Meta.PATH: path, Meta.SIZE: len(text), Meta.BLOB_HASH: f"{repo}/{path}/{hash(text)}",
            "input_issue": None}  # fmt: skip
    return Document(text=text, id=f"{repo}/{path}", metadata=meta)


def decide_files(files: dict[str, str], tmp_path: Path, repo: str = "r") -> tuple[set[str], dict[str, dict]]:
    """Kept code paths and the decisions rows (by path) of one repository through the license stage (license
    texts themselves pass this stage and leave at the language filter)."""
    writer = DecisionsWriter(str(tmp_path), "license")
    docs = [doc(repo, path, text) for path, text in sorted(files.items())]
    data = RepositoryLicenses(SETTINGS).run(iter(docs))
    kept = {d.metadata[Meta.PATH] for d in FileLicenseFilter(SETTINGS, exclusion_writer=writer).run(data)}
    kept = {path for path in kept if language_of(path) is not None and candidate_kind(path) is None}
    rows = {}
    for file in step_decisions_dir(tmp_path, "license").glob("*.parquet"):
        rows.update({r["doc_id"].removeprefix(f"{repo}/"): r for r in pq.read_table(file).to_pylist()})
    return kept, rows


CODE = "def area(width, height):\n    return width * height\n"


def test_rule_repository_license_governs_files_without_a_header(db, tmp_path):
    kept, _ = decide_files({"LICENSE": "Copyright (c) 2024 A\n\n" + db["mit"].text, "src/app.py": CODE}, tmp_path)
    assert "src/app.py" in kept


def test_rule_a_file_notice_never_widens_the_repository_license(db, tmp_path):
    vendor_file = "/* This file contains open-source contributions covered by the MIT license. */\n" + CODE
    files = {
        "package.json": '{"name": "@vendor/sdk", "license": "SEE LICENSE IN LICENSE.md"}',
        "LICENSE.md": db["gitlab-ee"].text,
        "dist/sdk.js": vendor_file,
    }
    kept, rows = decide_files(files, tmp_path)
    assert "dist/sdk.js" not in kept
    assert "mit" in rows["dist/sdk.js"]["scores"] and "gitlab-ee" in rows["dist/sdk.js"]["scores"]
    kept, rows = decide_files({"COPYING": db["gpl-3.0"].text, "lib/helper.py": "# " + db["mit"].text.replace(
        "\n", "\n# ") + "\n" + CODE}, tmp_path / "gpl")  # fmt: skip
    assert "lib/helper.py" not in kept and rows["lib/helper.py"]["reason"] == "license_not_permissive"


def test_rule_bundled_components_declared_by_the_repository_stand_alone(db, tmp_path):
    files = {
        "COPYING": db["gpl-3.0"].text,
        "vendor/zlib/LICENSE": db["zlib"].text,
        "vendor/zlib/inflate.py": CODE,
        "lib/mit_part.py": "# SPDX-License-Identifier: MIT\n" + CODE,
        "lib/core.py": CODE,
    }
    kept, _ = decide_files(files, tmp_path)
    assert kept == {"vendor/zlib/inflate.py", "lib/mit_part.py"}


def test_rule_package_metadata_unlicensed_and_see_license_in(db, tmp_path):
    mit = "Copyright (c) 2024 A\n\n" + db["mit"].text
    kept, rows = decide_files({"LICENSE": mit, "package.json": '{"license": "UNLICENSED"}', "index.js": CODE},
                              tmp_path / "a")  # fmt: skip
    assert not kept and rows["index.js"]["reason"] == "license_not_permissive"
    files = {"package.json": '{"license": "SEE LICENSE IN EULA.txt"}', "EULA.txt": db["gitlab-ee"].text,
             "index.js": CODE}  # fmt: skip
    kept, rows = decide_files(files, tmp_path / "b")
    assert not kept and "EULA.txt" in rows["index.js"]["scores"]
    files["EULA.txt"] = mit
    kept, _ = decide_files(files, tmp_path / "c")
    assert kept == {"index.js"}


def test_rule_reuse_licenses_folder_and_patents_file_govern_the_repository(db, tmp_path):
    reuse = {"LICENSES/GPL-3.0-or-later.txt": db["gpl-3.0-plus"].text, "LICENSES/MIT.txt": db["mit"].text,
             "src/a.py": CODE, "src/b.py": "# SPDX-License-Identifier: MIT\n" + CODE}  # fmt: skip
    kept, _ = decide_files(reuse, tmp_path / "reuse")
    assert kept == {"src/b.py"}
    bsd = "Copyright (c) 2016-present, Facebook, Inc.\n\n" + db["bsd-new"].text
    kept, _ = decide_files({"LICENSE": bsd, "src/a.py": CODE}, tmp_path / "bsd")
    assert kept == {"src/a.py"}
    kept, rows = decide_files({"LICENSE": bsd, "PATENTS": db["facebook-patent-rights-2"].text, "src/a.py": CODE},
                              tmp_path / "patents")  # fmt: skip
    assert not kept and "facebook-patent-rights-2" in rows["src/a.py"]["scores"]


def test_rule_header_naming_the_declared_licenses_takes_the_declared_combination(db, tmp_path):
    header = "# This Source Code is licensed under MPL 2.0 and Apache 2.0\n" + CODE
    files = {"Cargo.toml": '[package]\nname = "x"\nlicense = "MPL-2.0 OR Apache-2.0"\n', "src/lib.py": header}
    kept, _ = decide_files(files, tmp_path / "or")
    assert kept == {"src/lib.py"}
    declared = Resolution("mit OR gpl-3.0", "package_metadata", ("Cargo.toml",))
    one_option = resolve_file("src/gpl.py", Detection("license", "gpl-3.0", "exact-head"), declared, frozenset())
    assert one_option.expression == "gpl-3.0 AND (mit OR gpl-3.0)"


def test_rule_loose_mentions_are_references_not_grants(db, tmp_path):
    mention = "# You may place your modifications in the Public Domain\n" + CODE
    detection = LicenseDetector(SETTINGS).detect_header(mention)
    assert detection.expression == "public-domain" and detection.grant == "reference"
    kept, rows = decide_files({"mod.py": mention}, tmp_path)
    assert not kept and rows["mod.py"]["reason"] == "no_license"


def test_rule_markers_anywhere_in_the_file(db):
    c_file = "int counter;\n" * 420 + 'MODULE_LICENSE("GPL");\n'
    detection = LicenseDetector(SETTINGS).detect_header(c_file)
    assert detection.expression == "gpl-2.0-plus" and detection.matcher == "exact-file"
    long_text = "\n".join("# " + line for line in db["apache-2.0"].text.splitlines()) + "\n" + CODE
    assert LicenseDetector(SETTINGS).detect_header(long_text).expression == "apache-2.0"


def test_rule_leftover_license_text_is_never_dropped_silently(db):
    detector = LicenseDetector(SETTINGS)
    assert detector.detect_header("# License: CC-BY-ND\n" + CODE).expression == "cc-by-4.0 AND unknown"
    ruby_part = db["ruby"].text[db["ruby"].text.index("You may modify and include") :][:600]
    ruby = detector.detect_header(ruby_part)
    assert "unknown" in ruby.expression and ruby.matcher.startswith("full")
    extra = "// Licensed under the MIT license.\n// Portions licensed under the Acme Restricted Terms v2.\n" + CODE
    assert "unknown" in detector.detect_header(extra).expression
    # an imperfect notice is fully matched once per normalised text, then reused
    damaged = "# " + db["mit"].text.replace("restriction", "reTextiction").replace("\n", "\n# ")
    first = detector.detect_header(damaged + "\n" + CODE)
    second = detector.detect_header(damaged + "\nx = 1\n")
    assert first == second and first.expression == "mit" and detector.notice_cache_hits == 1


def test_rule_references_beside_a_notice_are_read_whole(db):
    either = (
        "/*\n * Copyright (C) Jane Roe 2003\n *\n * This software may be distributed either under the terms of the\n"
        " * BSD-style license that accompanies this package or the GNU GPL version 2\n * or later\n */\n" + CODE
    )
    exact_only = LicenseDetector(DetectorSettings(escalate_imperfect_headers=False)).detect_header(either)
    assert exact_only.expression == "bsd-new AND gpl-2.0-plus"  # two licenses: the GPL reference read alone
    whole = LicenseDetector(SETTINGS).detect_header(either)
    assert whole.expression == "bsd-new OR gpl-2.0-plus" and whole.matcher.startswith("full")


def test_rule_full_matcher_names_left_unmatched_are_unknown(db):
    """A license file or README section read by the full matcher: a restrictive license named on license
    language the matcher left unmatched, and shown by none of its keys, adds `unknown`."""
    detector = LicenseDetector(SETTINGS)
    section = (
        "## Copyright and license\n\nCode and documentation copyright 2014 Docker, inc. Code released under the "
        "Apache 2.0 license.\nDocs released under Creative commons.\n"
    )
    both = detector.detect_text(section)
    assert both.expression == "apache-2.0 AND unknown" and "creative commons" in both.detail
    # without the docs line, and where the named license is the one matched, nothing is added
    assert detector.detect_text(section.replace("Docs released under Creative commons.\n", "")).expression == (
        "apache-2.0"
    )
    gpl = detector.detect_text(db["gpl-2.0"].text + "\nThis program is released under the GPL.\n")
    assert "unknown" not in gpl.expression and gpl.detail is None


def test_rule_keys_that_grant_nothing_and_restrict_nothing(db, tmp_path):
    grant = "# You may use, copy, modify this code for any purpose and without fee.\n"  # ScanCode: other-permissive
    beside_mit = "# Licensed under the MIT license.\n" + grant + CODE
    assert LicenseDetector(SETTINGS).detect_header(beside_mit).expression == "mit AND other-permissive"
    kept, rows = decide_files({"beside_mit.py": beside_mit, "alone.py": grant + CODE}, tmp_path)
    assert kept == {"beside_mit.py"} and rows["alone.py"]["reason"] == "no_license"


def test_rule_timeouts_are_retried_then_dropped(monkeypatch):
    """A scan that burns CPU past its budget is retried once (full matcher, 4x the budget), then dropped."""
    calls: list[bool] = []
    cpu_cost = {"first": 0.3, "retry": 0.05}

    def burn(self, text, approximate, unknown):
        calls.append(approximate)
        end = time.process_time() + (cpu_cost["first"] if len(calls) == 1 else cpu_cost["retry"])
        while time.process_time() < end:
            pass
        return ScanResult(["mit"])

    monkeypatch.setattr(LicenseDetector, "_scancode_scan", burn)
    retried = LicenseDetector(DetectorSettings(header_deadline_s=0.1)).detect_header("# MIT\n")
    assert retried.status == "license" and calls == [False, True] and retried.matcher.endswith("retry-full")
    calls.clear()
    cpu_cost["retry"] = 0.3
    failed = LicenseDetector(DetectorSettings(header_deadline_s=0.05)).detect_header("# MIT\n")
    assert failed.status == "timeout" and calls == [False, True] and "retried with the full matcher" in failed.detail


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_rule_scoped_packages_are_separate_repositories(tmp_path):
    _tree(tmp_path, {"@babel/core/package.json": '{"license": "MIT"}', "@babel/core/index.js": CODE,
                     "@babel/parser/package.json": '{"license": "MIT"}', "@babel/parser/index.js": CODE,
                     "left-pad/package.json": '{"license": "WTFPL"}', "left-pad/index.js": CODE,
                     "group/a/Cargo.toml": "[package]\n", "group/b/go.mod": "module b\n"})  # fmt: skip
    source = RepositoriesSource(kind="repositories", root=str(tmp_path))
    assert source.units() == ["@babel/core", "@babel/parser", "group/a", "group/b", "left-pad"]
    [(name, files)] = list(source.repositories("@babel/core", 1_000_000))
    assert name == "@babel/core" and [f.path for f in files] == ["index.js", "package.json"]


def test_rule_symlinks_stay_inside_the_repository(db, tmp_path):
    repo = tmp_path / "repo"
    _tree(repo, {"docs/LICENSE.md": db["mit"].text, "src/a.py": CODE})
    os.symlink("docs/LICENSE.md", repo / "LICENSE")
    os.symlink("/nonexistent/file.py", repo / "dangling.py")
    os.symlink("loop_b", repo / "loop_a")
    os.symlink("loop_a", repo / "loop_b")
    os.symlink(str(tmp_path), repo / "outside")
    os.symlink("/etc/hostname", repo / "host.py")
    files = {f.path: f for f in walk_directory(repo)}
    issues = {path: f.issue for path, f in files.items() if f.issue}
    assert issues == {"dangling.py": "symlink_dangling", "loop_a": "symlink_loop", "loop_b": "symlink_loop",
                      "outside": "symlink_outside", "host.py": "symlink_outside"}  # fmt: skip
    assert files["LICENSE"].read() == db["mit"].text.encode()
    docs = [file_document("repo", f, InputLimits()) for f in files.values()]
    assert {d.metadata[Meta.PATH]: d.metadata["input_issue"] for d in docs}["LICENSE"] is None


def test_rule_failed_license_files_block(db, tmp_path):
    files = {"LICENSE": db["mit"].text, "fonts/LICENSE": "\0\0", "fonts/build.py": CODE}
    kept, rows = decide_files(files, tmp_path)
    assert "fonts/build.py" not in kept and rows["fonts/build.py"]["reason"] == "license_unknown"


def test_rule_a_run_that_keeps_nothing_exits_zero_with_a_manifest(cli, tmp_path, db):
    root = tmp_path / "repos"
    _tree(root, {"r1/src/a.py": "print('no license')\n"})
    os.symlink("/nonexistent", root / "r1" / "dangling.py")
    os.symlink("loop2", root / "r1" / "loop1")
    os.symlink("loop1", root / "r1" / "loop2")
    out = tmp_path / "data" / "curated" / "code"
    config = tmp_path / "code.yaml"
    config.write_text(yaml.safe_dump({"name": "code-none", "source": {"kind": "repositories", "root": str(root)},
                                      "output_dir": str(out), "executor": {"kind": "local", "tasks": 1,
                                                                           "workers": 1}}))  # fmt: skip
    result = cli("curate", "code", config)
    assert result.code == 0, result.err + result.out
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME]
    assert read_manifest(out).stats.documents == 0
    drops = read_manifest(decisions_dir(out))
    assert drops.stats.documents == 4
