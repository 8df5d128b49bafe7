"""Optional sources: an empty or absent one is left out and the phase's other weights keep their ratios."""

from __future__ import annotations

import pytest

from mixtures import compile_spec_file
from nano2.errors import ConfigError
from nano2.manifest import write_manifest
from tests.conftest import small_spec


def _artifact(root, rel, tokens):
    (root / rel).mkdir(parents=True)
    write_manifest(root / rel, kind="documents", name=rel, command="test", stats={"tokens": tokens})


def _spec(optional: bool) -> dict:
    spec = small_spec()
    spec["sources"] = {
        "web": {"path": "web", "max_epochs": 2},
        "code": {"path": "code", "max_epochs": 3},
        "syn": {"path": "syn", "max_epochs": 4, "optional": optional},
    }
    spec["phases"] = [
        {"name": "p1", "until": 0.6, "weights": {"web": 0.6, "code": 0.3, "syn": 0.1}},
        {"name": "p2", "until": 1.0, "weights": {"web": 0.4, "code": 0.4, "syn": 0.2}},
    ]
    return spec


@pytest.mark.parametrize("syn_tokens", [0, None])
def test_empty_or_missing_optional_source_is_left_out(tmp_path, write_spec, cli, syn_tokens):
    _artifact(tmp_path, "web", 900_000)
    _artifact(tmp_path, "code", 600_000)
    if syn_tokens is not None:
        _artifact(tmp_path, "syn", syn_tokens)
    spec, plan = compile_spec_file(write_spec(_spec(optional=True)), tmp_path)
    assert "syn" not in spec.sources and {s.name for s in plan.sources} == {"web", "code"}
    first = {a.name: a.sequences for a in plan.phases[0].sources}
    assert abs(first["web"] - 2 * first["code"]) <= 2  # 0.6 : 0.3 kept (up to largest-remainder rounding)
    assert sum(first.values()) == plan.phases[0].sequences
    res = cli("mix", "plan", write_spec(_spec(optional=True), "again.yaml"), "--data-root", tmp_path, "--quiet")
    assert res.code == 0 and "optional source 'syn'" in res.err


def test_required_empty_source_is_still_an_error(tmp_path, write_spec):
    _artifact(tmp_path, "web", 900_000)
    _artifact(tmp_path, "code", 600_000)
    _artifact(tmp_path, "syn", 0)
    with pytest.raises(ConfigError, match="insufficient tokens"):
        compile_spec_file(write_spec(_spec(optional=False)), tmp_path)
