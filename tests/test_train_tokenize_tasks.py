"""`nano2 train tokenize` as datatrove tasks: any task count gives the same shards and partition counts, a failed
task is redone alone, and an artifact with nothing in it still gets a manifest saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.executors import ExecutorConfig
from nano2.contracts.megatron import find_shards
from nano2.errors import Nano2Error
from nano2.manifest import ArtifactKind, read_manifest, write_manifest
from tests.test_train_support import repo_documents, write_jsonl
from train.tokenize import state_dir, tokenize_inputs


def six_file_corpus(root: Path) -> Path:
    """Six files of real text over two partitions, JSONL and Parquet (so 4 tasks each get a different share)."""
    web = root / "curated" / "web"
    for i, (package, suffix) in enumerate([("mixtures", ".py"), ("nano2", ".py"), ("curation", ".md")]):
        write_jsonl(web / "level=high" / f"part-{i}.jsonl", repo_documents(package, suffix, 5))
    for i, package in enumerate(["model", "train", "synthetic"]):
        (web / "level=low").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(repo_documents(package, ".py", 4)), web / "level=low" / f"p{i}.parquet")
    return web


def _run(web: Path, out: Path, tokenizer: Path, tasks: int, workers: int, overwrite: bool = False):
    executor = ExecutorConfig(tasks=tasks, workers=workers)
    return tokenize_inputs([web], out, tokenizer, data_root=web.parent.parent, show_progress=False,
                           executor=executor, overwrite=overwrite)  # fmt: skip


def _shard_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.suffix in (".bin", ".idx")}


def test_one_task_and_four_tasks_on_two_workers_write_the_same_shards(tmp_path, tiny_tokenizer_dir):
    web = six_file_corpus(tmp_path / "data")
    [one] = _run(web, tmp_path / "one", tiny_tokenizer_dir, tasks=1, workers=1)
    [four] = _run(web, tmp_path / "four", tiny_tokenizer_dir, tasks=4, workers=2)
    a, b = read_manifest(tmp_path / "one/curated/web"), read_manifest(tmp_path / "four/curated/web")
    assert a.stats.by == b.stats.by and a.stats.tokens == b.stats.tokens == one.tokens == four.tokens > 0
    assert set(a.stats.by["level"]) == {"high", "low"}
    for level, counts in b.stats.by["level"].items():  # the manifest's counts are the shards' own
        assert counts.tokens == sum(s.tokens for s in find_shards(tmp_path / f"four/curated/web/level={level}"))
    assert _shard_bytes(tmp_path / "one/curated/web") == _shard_bytes(tmp_path / "four/curated/web")
    assert not state_dir(tmp_path / "four/curated/web").exists()  # the run's state goes once the manifest is written


def test_a_failed_task_is_redone_alone(tmp_path, tiny_tokenizer_dir):
    web = six_file_corpus(tmp_path / "data")
    broken = web / "level=low" / "p2.parquet"  # sorted file 5 of 6: task 1 of 4 (round-robin)
    good = broken.read_bytes()
    broken.write_bytes(b"not parquet")
    out = tmp_path / "tokens"
    with pytest.raises(Exception):  # noqa: B017 - datatrove re-raises the task's error in its own wrapper
        _run(web, out, tiny_tokenizer_dir, tasks=4, workers=2)
    artifact = out / "curated/web"
    finished = {int(p.stem) for p in (state_dir(artifact) / "reports").glob("*.json")}
    assert 1 not in finished and finished  # task 1 failed, others finished (which ones depends on the pool)
    files = sorted(str(p.relative_to(web)) for p in web.rglob("*") if p.is_file())
    finished_shards = {Path(f).with_suffix(".bin").name for i, f in enumerate(files) if i % 4 in finished}
    before = {p.name: p.stat().st_mtime_ns for p in artifact.rglob("*.bin") if p.name in finished_shards}
    assert set(before) == finished_shards
    broken.write_bytes(good)
    _run(web, out, tiny_tokenizer_dir, tasks=4, workers=2)  # resumes: only the unfinished tasks run again
    after = {p.name: p.stat().st_mtime_ns for p in artifact.rglob("*.bin")}
    assert all(after[name] == t for name, t in before.items())  # shards of the finished tasks were not rewritten
    assert len(after) == 6
    _run(web, tmp_path / "ref", tiny_tokenizer_dir, tasks=1, workers=1)
    assert read_manifest(artifact).stats.by == read_manifest(tmp_path / "ref/curated/web").stats.by
    with pytest.raises(Nano2Error, match="already exists"):  # a finished artifact is not redone without --overwrite
        _run(web, out, tiny_tokenizer_dir, tasks=4, workers=2)


def test_an_empty_artifact_gets_a_manifest_and_a_reason(tmp_path, tiny_tokenizer_dir):
    empty = tmp_path / "data" / "curated" / "web"
    empty.mkdir(parents=True)
    write_manifest(empty, kind=ArtifactKind.DOCUMENTS, name="nothing-kept", command="test", config={}, inputs=[])
    [report] = _run(empty, tmp_path / "tokens", tiny_tokenizer_dir, tasks=2, workers=1)
    manifest = read_manifest(tmp_path / "tokens/curated/web")
    assert report.documents == 0 and manifest.stats.documents == 0 and manifest.stats.tokens == 0
    assert report.empty_reason == "the input artifact has no document files" and manifest.extra["files"] == 0
    assert manifest.extra["empty_reason"] == report.empty_reason  # the reason travels with the artifact
    everything_dropped = write_jsonl(tmp_path / "d2/curated/web/part.jsonl", [{"text": ""}, {"other": 1}])
    [report] = _run(everything_dropped.parent, tmp_path / "t2", tiny_tokenizer_dir, tasks=1, workers=1)
    extra = json.loads((tmp_path / "t2/curated/web/manifest.json").read_text())["extra"]
    assert report.empty_reason.startswith("every row was dropped (2 rows") and sum(extra["dropped"].values()) == 2
    assert extra["empty_reason"] == report.empty_reason
