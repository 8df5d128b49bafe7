"""The `nano2 mix` commands end to end through the real entry point."""

from __future__ import annotations

import json

import yaml

from nano2.manifest import read_manifest
from tests.conftest import SPECS

SPEC_12B = SPECS / "nano2-12b-pretrain.yaml"


def test_root_help_lists_sub_apps(cli):
    result = cli("--help")
    assert result.code == 0
    assert "mix" in result.out and "audit" in result.out


def test_validate_ok(cli):
    result = cli("mix", "validate", SPEC_12B)
    assert result.code == 0, result.err
    assert "ok:" in result.out and "3 phases" in result.out and "3,317,128 steps" in result.out


def test_plan_table_and_files(cli, tmp_path):
    out = tmp_path / "plans" / "12b" / "plan.json"
    result = cli("mix", "plan", SPEC_12B, "-o", out)
    assert result.code == 0, result.err
    for needle in ("phase1 total", "12,000,000,999,424", "5,999,997,485,056", "2,000,001,171,456", "epochs so far"):
        assert needle in result.out
    plan = json.loads(out.read_text())
    assert {"name", "seq_len", "global_batch_size", "total_steps", "phases"} <= set(plan)
    assert {"name", "start_step", "end_step", "tokens", "sources"} <= set(plan["phases"][0])
    assert {"name", "weight", "sequences", "tokens", "epochs"} <= set(plan["phases"][0]["sources"][0])
    manifest = read_manifest(out.parent)
    assert manifest.kind == "plan" and manifest.stats.tokens == plan["total_tokens"]
    assert manifest.inputs[0].path == str(SPEC_12B) and manifest.inputs[0].content_hash
    assert [f.path for f in manifest.files] == ["plan.json"]
    assert manifest.producer.config_hash == plan["spec_hash"]


def test_plan_refuses_to_overwrite_another_artifact(cli, tmp_path):
    from nano2.manifest import write_manifest

    write_manifest(tmp_path, kind="documents", name="web", command="t")
    result = cli("mix", "plan", SPEC_12B, "-o", tmp_path / "plan.json", "--quiet")
    assert result.code == 2 and "already holds a 'documents' artifact" in result.err


def test_diff_shows_weight_and_token_changes(cli, tmp_path):
    spec = yaml.safe_load(SPEC_12B.read_text())
    spec["phases"][2]["weights"]["math"] = 0.15
    spec["phases"][2]["weights"]["code"] = 0.12
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = cli("mix", "diff", SPEC_12B, edited)
    assert result.code == 0, result.err
    rows = [line for line in result.out.splitlines() if "phase3" in line]
    assert any("math" in r and "+0.03" in r for r in rows)
    assert any("code" in r and "-0.03" in r for r in rows)
    assert not any("phase1" in line for line in result.out.splitlines())
    assert cli("mix", "diff", SPEC_12B, SPEC_12B).out.strip() == "no differences"


def test_diff_of_a_spec_that_does_not_compile(cli, tmp_path):
    spec = yaml.safe_load(SPEC_12B.read_text())
    spec["sources"]["wiki"]["max_epochs"] = 1
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = cli("mix", "diff", SPEC_12B, edited)
    assert result.code == 0
    assert "does not compile" in result.out and "sources.wiki" in result.out


def test_export_megatron_and_plan(cli, tmp_path):
    assert cli("mix", "export", SPEC_12B, "--format", "megatron", "-o", tmp_path / "mg").code == 0
    assert (tmp_path / "mg" / "02-phase2.data-args.txt").exists()
    assert cli("mix", "export", SPEC_12B, "--format", "plan", "-o", tmp_path / "pl").code == 0
    assert read_manifest(tmp_path / "pl").kind == "plan"
    bad = cli("mix", "export", SPEC_12B, "--format", "nemo", "-o", tmp_path / "x")
    assert bad.code == 2 and "megatron or plan" in bad.err


def test_plot_writes_a_png(cli, tmp_path):
    out = tmp_path / "mix.png"
    result = cli("mix", "plot", SPEC_12B, "-o", out)
    assert result.code == 0, result.err
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_version(cli):
    from importlib import metadata

    result = cli("--version")
    assert result.code == 0 and result.out.strip() == f"nano2 {metadata.version('nano2-recipe')}"


def test_debug_is_accepted_anywhere(cli, tmp_path):
    missing = tmp_path / "missing.yaml"
    plain = cli("mix", "validate", missing)
    assert plain.code == 2 and plain.err.strip() == f"error: {missing}: file not found"
    import pytest

    from nano2.errors import ConfigError

    for args in (("--debug", "mix", "validate", missing), ("mix", "validate", missing, "--debug")):
        with pytest.raises(ConfigError):  # --debug re-raises: the traceback is shown
            cli(*args)


def test_usage_errors_print_the_usage_line(cli):
    result = cli("mix", "validate")
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 2
    assert lines[0].startswith("usage: nano2 mix validate") and lines[1].startswith("error: Missing argument")
    unknown = cli("mix", "validat")
    assert unknown.code == 2 and unknown.err.startswith("usage: nano2 mix") and "No such command" in unknown.err
