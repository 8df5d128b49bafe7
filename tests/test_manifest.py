"""Lineage manifests: schema, ids, code version, inputs and nested artifacts."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from nano2.errors import ConfigError, MissingManifestError
from nano2.manifest import (
    code_version,
    content_hash,
    find_manifest,
    input_ref,
    list_files,
    read_manifest,
    write_manifest,
)


def _make(directory, **kw):
    fields = {"kind": "documents", "name": "web", "command": "test", "config": {"a": 1}}
    fields.update(kw)
    return write_manifest(directory, **fields)


def test_round_trip_and_files(tmp_path):
    art = tmp_path / "web"
    (art / "level=high").mkdir(parents=True)
    (art / "level=high" / "part-0.jsonl").write_text('{"text": "hi"}\n')
    m = _make(art, stats={"documents": 1, "tokens": 2, "by": {"level": {"high": {"documents": 1, "tokens": 2}}}})
    back = read_manifest(art)
    assert back == m
    assert [f.path for f in back.files] == ["level=high/part-0.jsonl"]
    assert back.files[0].sha256 == content_hash(art / "level=high" / "part-0.jsonl")
    assert back.stats.by["level"]["high"].tokens == 2
    assert back.producer.config_hash is not None
    raw = json.loads((art / "manifest.json").read_text())
    assert {"kind", "name", "created_at", "producer", "code", "inputs", "stats", "files"} <= set(raw)


def test_id_is_content_addressed(tmp_path):
    a = _make(tmp_path / "a")
    b = _make(tmp_path / "b")
    c = _make(tmp_path / "c", config={"a": 2})
    assert a.id == b.id != c.id


def test_code_version_reads_git():
    version = code_version()
    assert version.package_version
    assert version.commit is None or len(version.commit) == 40
    if version.dirty:
        assert version.diff_hash is not None


def test_input_ref_prefers_manifest_id(tmp_path):
    art = tmp_path / "art"
    m = _make(art)
    assert input_ref(art).manifest_id == m.id
    loose = tmp_path / "loose.txt"
    loose.write_text("x")
    ref = input_ref(loose)
    assert ref.manifest_id is None and ref.content_hash == content_hash(loose)
    with pytest.raises(MissingManifestError):
        input_ref(tmp_path / "missing")


def test_nested_artifacts_are_not_listed(tmp_path):
    outer = tmp_path / "outer"
    (outer / "inner").mkdir(parents=True)
    (outer / "a.txt").write_text("a")
    (outer / "inner" / "b.txt").write_text("b")
    _make(outer / "inner")
    assert [f.path for f in list_files(outer)] == ["a.txt"]


def test_find_manifest_walks_up(tmp_path):
    art = tmp_path / "web"
    (art / "level=high").mkdir(parents=True)
    m = _make(art)
    found = find_manifest(art / "level=high", stop_at=tmp_path)
    assert found is not None and found[1].id == m.id
    assert find_manifest(tmp_path, stop_at=tmp_path) is None


def test_bad_manifests_are_clear_errors(tmp_path):
    with pytest.raises(MissingManifestError, match=r"no manifest\.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ConfigError, match="malformed JSON"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"kind": "x"}')
    with pytest.raises(ConfigError, match="required"):
        read_manifest(tmp_path)


def test_a_kind_with_an_extras_schema_is_validated_on_write_and_read(tmp_path):
    """`tokens` manifests carry typed extras: a misspelt key is an error, and readers get typed fields."""
    good = {"format": "megatron-indexed", "dtype": "uint16", "files": 1,
            "tokenizer": {"path": "t.json", "sha256": "ab", "vocab_size": 4096, "eos_id": 2}}  # fmt: skip
    written = write_manifest(tmp_path / "ok", kind="tokens", name="ok", command="t", extra=good)
    typed = read_manifest(tmp_path / "ok").typed_extra()
    assert typed.tokenizer.vocab_size == 4096 and written.kind == "tokens"
    with pytest.raises(ValidationError, match="vocab_sise"):
        write_manifest(tmp_path / "bad", kind="tokens", name="bad", command="t", extra={"vocab_sise": 3})
    assert write_manifest(tmp_path / "free", kind="plan", name="p", command="t", extra={"any": 1}).typed_extra() is None
