"""Source token counts read from manifests, including key=value partitions, and the tiny spec."""

from __future__ import annotations

import pytest

from mixtures import compile_spec_file
from nano2.errors import ConfigError
from nano2.manifest import write_manifest
from tests.conftest import SPECS, small_spec


def make_artifact(root, rel, tokens=None, by=None, name=None):
    return write_manifest(
        root / rel,
        kind="documents",
        name=name or rel.replace("/", "-"),
        command="test",
        stats={"tokens": tokens, "by": by or {}},
    )


def make_tiny_root(root):
    """Manifests for every source path of mixtures/specs/tiny.yaml (enough tokens for its caps)."""
    make_artifact(
        root,
        "curated/web",
        tokens=700_000,
        by={"subset": {"high": {"tokens": 200_000}, "medium": {"tokens": 400_000}, "low": {"tokens": 100_000}}},
    )
    make_artifact(root, "synthetic/rephrase", tokens=150_000)
    make_artifact(root, "curated/code", tokens=120_000)
    make_artifact(root, "chat/synthetic/reasoning", tokens=60_000)


def test_tiny_spec_reads_manifests(tmp_path):
    make_tiny_root(tmp_path)
    _, plan = compile_spec_file(SPECS / "tiny.yaml", tmp_path)
    by = {s.name: s for s in plan.sources}
    assert by["crawl-high"].available_tokens == 200_000
    assert by["crawl-high"].origin == "curated/web/subset=high"
    assert by["crawl-medium"].available_tokens == 400_000
    assert by["code"].available_tokens == 120_000
    assert by["code"].manifest_id is not None
    assert plan.total_tokens == (2_000_000 // (256 * 8)) * 256 * 8


def test_partition_not_recorded(tmp_path, write_spec):
    make_artifact(tmp_path, "web", tokens=10**6, by={"subset": {"high": {"tokens": 10**5}}})
    spec = small_spec()
    spec["sources"]["web"] = {"path": "web/subset=medium", "max_epochs": 2}
    with pytest.raises(ConfigError, match=r"no token count for subset=medium.*subset=high"):
        compile_spec_file(write_spec(spec), tmp_path)


def test_manifest_without_tokens(tmp_path, write_spec):
    make_artifact(tmp_path, "web", tokens=None)
    spec = small_spec()
    spec["sources"]["web"] = {"path": "web", "max_epochs": 2}
    with pytest.raises(ConfigError, match=r"sources\.web\.path.*no token count"):
        compile_spec_file(write_spec(spec), tmp_path)


def test_manifest_tokens_change_the_plan(tmp_path, write_spec):
    spec = small_spec()
    spec["sources"]["web"] = {"path": "web", "max_epochs": 1}
    path = write_spec(spec)
    make_artifact(tmp_path, "web", tokens=10**6)
    compile_spec_file(path, tmp_path)  # enough
    make_artifact(tmp_path, "web", tokens=10**5)
    with pytest.raises(ConfigError, match="insufficient tokens"):
        compile_spec_file(path, tmp_path)
