"""Bad input: every failure is one line naming the file and the field, with exit code 2."""

from __future__ import annotations

import pytest

from tests.conftest import small_spec


def _assert_one_line_error(result, *needles: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _spec(**changes):
    spec = small_spec()
    for key, value in changes.items():
        spec[key] = value
    return spec


def test_weights_not_summing_to_one(cli, write_spec):
    spec = small_spec()
    spec["phases"][1]["weights"] = {"web": 0.5, "code": 0.3, "math": 0.1}
    path = write_spec(spec)
    _assert_one_line_error(cli("mix", "validate", path), str(path), "phases[1].weights", "sum to 0.9", "expected 1")


def test_negative_weight(cli, write_spec):
    spec = small_spec()
    spec["phases"][0]["weights"] = {"web": 1.2, "code": -0.2}
    path = write_spec(spec)
    _assert_one_line_error(cli("mix", "validate", path), "phases[0].weights", ">= 0", "code")


def test_unknown_source(cli, write_spec):
    spec = small_spec()
    spec["phases"][0]["weights"] = {"web": 0.6, "code": 0.3, "maths": 0.1}
    path = write_spec(spec)
    _assert_one_line_error(
        cli("mix", "validate", path), str(path), "phases[0].weights.maths", "unknown source", "code, math, web"
    )


def test_until_not_increasing(cli, write_spec):
    spec = small_spec()
    spec["phases"] = [
        {"name": "p1", "until": 0.6, "weights": {"web": 1.0}},
        {"name": "p2", "until": 0.5, "weights": {"web": 1.0}},
        {"name": "p3", "until": 1.0, "weights": {"web": 1.0}},
    ]
    path = write_spec(spec)
    _assert_one_line_error(cli("mix", "validate", path), str(path), "phases[1].until", "greater than")


def test_last_phase_must_end_at_one(cli, write_spec):
    spec = small_spec()
    spec["phases"][1]["until"] = 0.95
    _assert_one_line_error(cli("mix", "validate", write_spec(spec)), "phases[1].until", "end at 1.0")


def test_malformed_yaml(cli, write_spec):
    path = write_spec("name: x\nsources:\n  web: {tokens: 1M\nphases: []\n")
    _assert_one_line_error(cli("mix", "validate", path), str(path), "line", "malformed YAML")


def test_duplicate_key(cli, write_spec):
    path = write_spec("name: a\nname: b\n")
    _assert_one_line_error(cli("mix", "validate", path), "duplicate key 'name'")


def test_unknown_key_top_level(cli, write_spec):
    path = write_spec(_spec(seq_length=8192))
    _assert_one_line_error(cli("mix", "validate", path), str(path), "seq_length", "unknown key", "seq_len")


def test_unknown_key_in_source(cli, write_spec):
    spec = small_spec()
    spec["sources"]["web"]["epochs"] = 3
    path = write_spec(spec)
    _assert_one_line_error(cli("mix", "validate", path), "sources.web.epochs", "unknown key", "max_epochs")


def test_missing_required_field(cli, write_spec):
    spec = small_spec()
    del spec["global_batch_size"]
    _assert_one_line_error(cli("mix", "validate", write_spec(spec)), "global_batch_size", "required")


def test_bad_token_count(cli, write_spec):
    path = write_spec(_spec(total_tokens="20 trillion"))
    _assert_one_line_error(cli("mix", "validate", path), "total_tokens", "20T")


def test_source_needs_exactly_one_origin(cli, write_spec):
    spec = small_spec()
    spec["sources"]["web"] = {"tokens": "1M", "path": "web"}
    _assert_one_line_error(cli("mix", "validate", write_spec(spec)), "sources.web", "exactly one of")


def test_insufficient_tokens(cli, write_spec):
    spec = small_spec()
    spec["sources"]["math"] = {"tokens": "100K", "max_epochs": 1}
    path = write_spec(spec)
    # math needs 0.1 x 600K = 60K in p1 and 0.2 x 400K = 80K in p2: 140K > 100K, crossed in p2.
    _assert_one_line_error(
        cli("mix", "plan", path),
        str(path),
        "sources.math",
        "insufficient tokens",
        "'p2'",
        "100,000 available",
        "max_epochs 1",
    )


def test_missing_manifest(cli, write_spec, tmp_path):
    spec = small_spec()
    spec["sources"]["web"] = {"path": "curated/web", "max_epochs": 2}
    path = write_spec(spec)
    result = cli("mix", "plan", path, "--data-root", tmp_path)
    _assert_one_line_error(result, str(path), "sources.web.path", "missing manifest")


def test_missing_spec_file(cli, tmp_path):
    _assert_one_line_error(cli("mix", "validate", tmp_path / "nope.yaml"), "nope.yaml", "file not found")


def test_empty_spec(cli, write_spec):
    _assert_one_line_error(cli("mix", "validate", write_spec("")), "empty document")


def test_debug_shows_the_exception(write_spec):
    from nano2.app.cli import main
    from nano2.errors import ConfigError

    path = write_spec("name: [")
    with pytest.raises(ConfigError):
        main(["--debug", "mix", "validate", str(path)])


def test_phase_with_no_steps(cli, write_spec):
    spec = small_spec(total_tokens="2K")  # 3 steps of 512 tokens
    spec["phases"] = [
        {"name": "a", "until": 0.1, "weights": {"web": 1.0}},
        {"name": "b", "until": 1.0, "weights": {"web": 1.0}},
    ]
    _assert_one_line_error(cli("mix", "plan", write_spec(spec)), "phases[0].until", "no optimizer step")


def test_usage_error_exit_code(cli):
    result = cli("mix", "plan")
    assert result.code == 2
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("where", "value", "needle"),
    [
        ("weight", float("nan"), "finite"),
        ("weight", "0.55", "phases[0].weights"),
        ("weight", True, "phases[0].weights"),
        ("seq_len", "4096", "seq_len"),
    ],
)
def test_no_coercion_and_no_nan(cli, write_spec, where, value, needle):
    """A weight of NaN, a weight or length written as a string, or `true` as a weight: one clear error naming the
    file and field, never a silent conversion or a TypeError later."""
    spec = small_spec()
    if where == "weight":
        first = next(iter(spec["phases"][0]["weights"]))
        spec["phases"][0]["weights"][first] = value
    else:
        spec[where] = value
    path = write_spec(spec)
    _assert_one_line_error(cli("mix", "validate", path), str(path), needle)


# --- strict types: no string -> number, booleans are not numbers, NaN/inf refused (every config model) ---------


@pytest.mark.parametrize(
    ("yaml_text", "field", "expected"),
    [
        ("weight_nan", "phases[0].weights.web", "finite number"),
        ("weight_inf", "phases[0].weights.web", "finite number"),
        ("weight_string", "phases[0].weights.web", "'0.6'"),
        ("weight_bool", "phases[0].weights.web", "True"),
        ("seq_len_string", "seq_len", "'128'"),
        ("seq_len_bool", "seq_len", "True"),
    ],
)
def test_strict_types_in_specs(cli, write_spec, yaml_text, field, expected):
    spec = small_spec()
    case = {
        "weight_nan": ("web: 0.6", "web: .nan"),
        "weight_inf": ("web: 0.6", "web: .inf"),
        "weight_string": ("web: 0.6", "web: '0.6'"),
        "weight_bool": ("web: 0.6", "web: true"),
        "seq_len_string": ("seq_len: 128", "seq_len: '128'"),
        "seq_len_bool": ("seq_len: 128", "seq_len: true"),
    }[yaml_text]
    import yaml

    text = yaml.safe_dump(spec, sort_keys=False, default_flow_style=False)
    assert case[0] in text
    path = write_spec(text.replace(case[0], case[1], 1))
    _assert_one_line_error(cli("mix", "validate", path), str(path), field, expected)


def test_yaml_12_floats_and_paths_still_load(tmp_path):
    """`1e-3` is a float (YAML 1.2), and strings still become paths and enums under strict validation."""
    from pathlib import Path

    from pydantic import BaseModel

    from nano2.config import load_yaml_model

    class Example(BaseModel):
        rate: float
        where: Path
        count: int

    path = tmp_path / "x.yaml"
    path.write_text("rate: 1e-3\nwhere: runs/x\ncount: 3\n")
    loaded = load_yaml_model(path, Example)
    assert loaded.rate == 0.001 and loaded.where == Path("runs/x") and loaded.count == 3


@pytest.mark.parametrize(
    ("kind", "text", "field"),
    [
        ("web", "output_dir: o\nwork_dir: w\ninputs: [{kind: warc, path: x, limit: '5'}]\n", "inputs[0].limit"),
        ("web", "output_dir: o\nwork_dir: w\ninputs: [{kind: warc, path: x}]\nlanguage: {min_score: .nan}\n",
         "language.min_score"),
        ("web", "output_dir: o\nwork_dir: w\ninputs: [{kind: warc, path: x}]\nurl_filter: {enabled: 'yes'}\n",
         "url_filter.enabled"),
    ],
)  # fmt: skip
def test_strict_types_in_web_configs(tmp_path, kind, text, field):
    from curation.web.config import load_web_config
    from nano2.errors import ConfigError

    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    assert str(err.value).startswith(f"{path}: {field}: ")
