"""`nano2 curate code CONFIG` end to end: documents, decisions and a manifest the audit and the mixtures read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from curation.licenses.detector import load_index
from nano2.contracts.documents import DOCUMENT_SCHEMA
from nano2.contracts.shards import decisions_dir
from nano2.manifest import MANIFEST_NAME, read_manifest

REPO = Path(__file__).resolve().parent.parent
SHARED_CODE = "def shared_helper(values):\n    total = 0\n    for value in values:\n        total += value * 2\n    return total\n"  # noqa: E501


@pytest.fixture(scope="session")
def scancode_index():
    return load_index()


@pytest.fixture
def repos_root(tmp_path, scancode_index):
    """Four small repositories with real license texts from ScanCode's license database."""
    from licensedcode.cache import get_licenses_db

    db = get_licenses_db()
    root = tmp_path / "repos"
    files = {
        "mit-project/LICENSE": "Copyright (c) 2024 The Authors\n\n" + db["mit"].text,
        "mit-project/src/app.py": "import sys\n\n\ndef main(argv):\n    return len(argv)\n\n\nprint(main(sys.argv))\n",
        "mit-project/src/gpl_module.py": "# SPDX-License-Identifier: GPL-2.0-only\n\ndef copyleft():\n    return 42\n",
        "mit-project/src/helper.py": SHARED_CODE,
        "mit-project/src/blob.py": "\0\0binary",
        "mit-fork/LICENSE": "Copyright (c) 2024 The Authors\n\n" + db["mit"].text,
        "mit-fork/src/helper.py": SHARED_CODE.replace("\n", "\r\n"),  # an exact duplicate once normalised
        "gpl-project/COPYING": db["gpl-3.0"].text,
        "gpl-project/lib/mit_helper.py": "# SPDX-License-Identifier: MIT\n\ndef helper(x):\n    return x + 1\n",
        "gpl-project/lib/core.py": "def core(x):\n    return x * 3\n",
        "no-license/main.py": "print('no license here')\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def write_config(tmp_path, source: dict, **overrides) -> Path:
    cfg = {
        "name": "code-test",
        "source": source,
        "output_dir": str(tmp_path / "data" / "curated" / "code"),
        "executor": {"kind": "local", "tasks": 1, "workers": 1},
        **overrides,
    }
    path = tmp_path / "code.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_curate_code_end_to_end(cli, tmp_path, repos_root):
    config = write_config(tmp_path, {"kind": "repositories", "root": str(repos_root)})
    result = cli("curate", "code", config)
    assert result.code == 0, result.err + result.out
    out = tmp_path / "data" / "curated" / "code"
    # partitioned by programming language, one shard, no decisions inside
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST_NAME, "subset=Python"]
    assert pq.read_schema(out / "subset=Python" / "00000.parquet").equals(DOCUMENT_SCHEMA)
    con = duckdb.connect()
    docs = {r[0]: r for r in con.execute(
        f"SELECT id, metadata.license_spdx, metadata.license_source, metadata.code_language, metadata.blob_hash, "
        f"token_count, source, metadata.repo FROM read_parquet('{out}/*/*.parquet')"
    ).fetchall()}  # fmt: skip
    # mit-project/src/helper.py is an exact duplicate of the fork's copy (CRLF vs LF), read first
    assert set(docs) == {"mit-project/src/app.py", "gpl-project/lib/mit_helper.py", "mit-fork/src/helper.py"}
    assert docs["mit-project/src/app.py"][1:4] == ("MIT", "license_file", "Python")
    assert docs["gpl-project/lib/mit_helper.py"][1:3] == ("MIT", "header")
    assert all(row[5] > 0 and row[6] == row[7] for row in docs.values())  # a file's source is its repository
    decisions_folder = decisions_dir(out)  # beside the output: tmp/data/curated/code.decisions (not a run dir)
    assert decisions_folder == out.with_name("code.decisions")
    decisions = dict(con.execute(
        f"SELECT doc_id, step || ':' || reason FROM read_parquet('{decisions_folder}/*/*.parquet')"
    ).fetchall())  # fmt: skip
    assert decisions["mit-project/src/gpl_module.py"] == "code_license:license_not_permissive"
    assert decisions["gpl-project/lib/core.py"] == "code_license:license_not_permissive"
    assert decisions["no-license/main.py"] == "code_license:no_license"
    assert decisions["mit-project/src/blob.py"] == "code_input:binary"
    assert decisions["mit-project/LICENSE"] == "code_language:unsupported_extension"
    assert decisions["mit-project/src/helper.py"] == "code_exact_dedup:exact_duplicate"
    manifest = read_manifest(out)
    assert manifest.kind == "documents" and manifest.name == "code-test" and manifest.stats.documents == 3
    assert manifest.stats.by["license_spdx"]["MIT"].documents == 3
    assert manifest.stats.by["code_language"]["Python"].documents == 3
    assert manifest.stats.by["subset"]["Python"].documents == 3
    assert manifest.stats.tokenizer and manifest.stats.tokenizer.startswith("default@")
    drops = read_manifest(decisions_folder)
    assert drops.kind == "decisions" and drops.stats.documents == len(decisions)
    assert drops.stats.by["step"]["code_license"].documents == 3
    assert manifest.stats.tokens == sum(row[5] for row in docs.values())
    assert manifest.extra["license"]["scancode_toolkit_version"]
    assert "kept by license" in result.out and "license_not_permissive" in result.out

    audit = cli("audit", tmp_path / "data")
    assert audit.code == 0, audit.err
    assert "license_not_permissive" in audit.out and "no_license" in audit.out
    by_license = cli(
        "audit", tmp_path / "data", "--queries-dir", REPO / "curation" / "code" / "queries",
        "-q", "code_tokens_by_license", "--format", "json",
    )  # fmt: skip
    assert by_license.code == 0, by_license.err
    rows = json.loads(by_license.out)
    assert rows[0]["license_spdx"] == "MIT" and rows[0]["files"] == 3

    rerun = cli("curate", "code", config)  # datatrove resume: every task is complete, the manifest is rewritten
    assert rerun.code == 0 and read_manifest(out).stats.documents == 3
    assert "empty_reason" not in manifest.extra


def test_an_empty_result_says_why_in_its_manifest(cli, tmp_path, scancode_index):
    """No repository at all, then repositories whose every file is dropped: an empty artifact with a manifest
    whose `empty_reason` names what dropped the files (from the decisions)."""
    empty_root = tmp_path / "empty"
    empty_root.mkdir()
    config = write_config(tmp_path, {"kind": "repositories", "root": str(empty_root)})
    assert cli("curate", "code", config).code == 0
    out = tmp_path / "data" / "curated" / "code"
    manifest = read_manifest(out)
    assert manifest.stats.documents == 0
    assert manifest.extra["empty_reason"] == "nothing left after curation: the inputs held no file"

    dropped_root = tmp_path / "dropped"
    (dropped_root / "repo").mkdir(parents=True)
    (dropped_root / "repo" / "main.py").write_text("print('no license here')\n", encoding="utf-8")
    (dropped_root / "repo" / "blob.c").write_bytes(b"\0\0binary")
    config = write_config(tmp_path, {"kind": "repositories", "root": str(dropped_root)})
    assert cli("curate", "code", config, "--fresh").code == 0
    reason = read_manifest(out).extra["empty_reason"]
    assert reason.startswith("nothing left after curation: every file was dropped (2: ")
    assert "code_license/no_license: 1" in reason and "code_input/binary: 1" in reason


def test_config_errors_are_one_line(cli, tmp_path):
    bad_key = write_config(tmp_path, {"kind": "repositories", "root": str(tmp_path)}, colour="blue")
    result = cli("curate", "code", bad_key)
    assert result.code == 2 and "colour: unknown key" in result.err
    bad_language = write_config(tmp_path, {"kind": "repositories", "root": str(tmp_path)}, languages=["Klingon"])
    result = cli("curate", "code", bad_language)
    assert result.code == 2 and "languages" in result.err and "Klingon" in result.err
    missing_root = write_config(tmp_path, {"kind": "repositories", "root": str(tmp_path / "nowhere")})
    result = cli("curate", "code", missing_root)
    assert result.code == 2 and "is not a directory" in result.err
    bad_source = write_config(tmp_path, {"kind": "ftp"})
    assert cli("curate", "code", bad_source).code == 2


def test_fresh_refuses_to_delete_a_directory_it_did_not_write(cli, tmp_path):
    config = write_config(tmp_path, {"kind": "repositories", "root": str(tmp_path)})
    precious = tmp_path / "data" / "curated" / "code"
    precious.mkdir(parents=True)
    (precious / "thesis.tex").write_text("years of work")
    result = cli("curate", "code", config, "--fresh")
    assert result.code == 2 and "refusing to delete" in result.err
    assert (precious / "thesis.tex").exists()


def test_shipped_tiny_config_runs_on_this_environment(cli, tmp_path, scancode_index):
    """`nano2 curate code curation/configs/code-tiny.yaml`, with its output and work dirs moved into tmp_path."""
    cfg = yaml.safe_load((REPO / "curation" / "configs" / "code-tiny.yaml").read_text())
    cfg["output_dir"] = str(tmp_path / "tiny" / "curated" / "code")
    cfg["work_dir"] = str(tmp_path / "tiny" / ".work" / "code")
    config = tmp_path / "code-tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = cli("curate", "code", config)
    assert result.code == 0, result.err + result.out
    manifest = read_manifest(tmp_path / "tiny" / "curated" / "code")
    licenses = manifest.stats.by["license_spdx"]
    assert {"MIT", "BSD-3-Clause", "Apache-2.0"} <= set(licenses)
    assert not any("GPL" in k and " OR " not in k for k in licenses)  # copyleft only as one option of an OR
    assert manifest.stats.tokens > 10_000


def test_stage_runner_runs_stages_in_order_with_their_task_counts(tmp_path):
    """The one runner of the web and code pipelines: stages in order, a fixed task count never given more
    workers than tasks, each stage resumable from its own logging dir."""
    from datatrove.pipeline.base import PipelineStep

    from curation.executors import ExecutorConfig
    from curation.stages import Stage, run_stages, stage_executor_config

    class Mark(PipelineStep):
        def __init__(self, folder, name):
            super().__init__()
            self.folder, self.name = folder, name

        def run(self, data=None, rank: int = 0, world_size: int = 1):
            (self.folder / f"{self.name}-{rank}-of-{world_size}").touch()
            yield from data or []

    config = ExecutorConfig(kind="local", tasks=3, workers=2)
    assert stage_executor_config(config, None) == config
    assert stage_executor_config(config, 1).model_dump() == {**config.model_dump(), "tasks": 1, "workers": 1}
    stages = [Stage("wide", [Mark(tmp_path, "wide")], tmp_path / "logs" / "wide"),
              Stage("gather", [Mark(tmp_path, "gather")], tmp_path / "logs" / "gather", tasks=1)]  # fmt: skip
    started = []
    assert run_stages(stages, config, on_stage=lambda i, n, s: started.append((i, n, s.name))) is True
    assert started == [(0, 2, "wide"), (1, 2, "gather")]
    assert sorted(p.name for p in tmp_path.glob("*-of-*")) == [
        "gather-0-of-1", "wide-0-of-3", "wide-1-of-3", "wide-2-of-3",
    ]  # fmt: skip
    assert all((tmp_path / "logs" / s.name / "completions").is_dir() for s in stages)


def test_small_local_stages_run_in_the_driver_after_their_steps_warm(tmp_path):
    """A local stage that reads little runs its tasks in the driver (same task count, so the same shards); every
    step's `warm()` runs in the driver first."""
    from datatrove.pipeline.base import PipelineStep

    from curation.executors import ExecutorConfig
    from curation.stages import SERIAL_BELOW_BYTES, Stage, run_stages, serial_locally, stage_executor_config

    class Where(PipelineStep):
        def __init__(self, folder):
            super().__init__()
            self.folder, self.warmed = folder, False

        def warm(self):
            self.warmed = True

        def run(self, data=None, rank: int = 0, world_size: int = 1):
            (self.folder / f"{rank}-{os.getpid()}-{self.warmed}").touch()
            yield from data or []

    small, big = tmp_path / "small", tmp_path / "big"
    small.mkdir(), big.mkdir()
    (small / "part").write_bytes(b"x" * 100)
    (big / "part").write_bytes(b"x" * SERIAL_BELOW_BYTES)
    logs = tmp_path / "logs"
    assert serial_locally(Stage("s", [], logs, reads=(small,)))
    assert not serial_locally(Stage("s", [], logs, reads=(big,)))
    assert not serial_locally(Stage("s", [], logs))  # reads nothing it names: the configured workers
    config = ExecutorConfig(kind="local", tasks=3, workers=2)
    assert stage_executor_config(config, None, serial=True).model_dump() == {**config.model_dump(), "workers": 1}
    slurm = ExecutorConfig(kind="slurm", tasks=3, workers=2)
    assert stage_executor_config(slurm, None, serial=True) == slurm
    out = tmp_path / "out"
    out.mkdir()
    assert run_stages([Stage("small", [Where(out)], logs / "small", reads=(small,))], config)
    assert sorted(p.name for p in out.iterdir()) == [f"{rank}-{os.getpid()}-True" for rank in range(3)]
