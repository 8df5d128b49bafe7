"""`nano2 eval run`: the runner end to end on a tiny checkpoint (files, keys, manifest, resume), against a scripted
backend that answers with the gold answers (every benchmark must score 100%), resume details, CIs, reports."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from evals.config import EvalConfig, load_eval_config
from evals.intervals import bootstrap_interval, estimate, wilson_interval
from evals.run import run_eval
from evals.scoring import scored_answer
from evals.store import SAMPLES_FILE
from nano2.errors import ConfigError, Nano2Error
from synthetic.backends import GenerationRequest, GenerationResponse

SUMMARY_KEYS = {"name", "n", "metric", "score", "ci_low", "ci_high"}
ORACLE = "evals/ifeval_oracle_Qwen_Qwen2.5-7B-Instruct-GPTQ-Int4_{mode}.jsonl.gz"


# ---------------------------------------------------------------------------------------------------------------------
# Backends for tests
# ---------------------------------------------------------------------------------------------------------------------


class CountingBackend:
    """Counts generate calls and requests; answers every request with a fixed text (or fails the ones asked)."""

    name = "counting"
    model = "counting"

    def __init__(self, text: str = "no idea", fail_keys: Sequence[str] = ()):
        self.text, self.fail_contents = text, set(fail_keys)
        self.calls = 0
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        self.calls += 1
        self.requests.extend(requests)
        out = []
        for r in requests:
            content = r.prompt if r.prompt is not None else r.messages[-1]["content"]
            if any(needle in content for needle in self.fail_contents):
                out.append(GenerationResponse(key=r.key, texts=[], error="scripted failure"))
            else:
                n = r.sampling.n
                out.append(
                    GenerationResponse(r.key, [self.text] * n, finish_reasons=["stop"] * n, completion_tokens=[3] * n)
                )
        return out

    def close(self) -> None:
        pass


class GoldBackend:
    """Answers each prompt with its gold answer, in the shape a model would (thinking trace when asked for)."""

    name = "gold"
    model = "gold"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.calls = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        self.calls += 1
        out = []
        for r in requests:
            content = r.prompt if r.prompt is not None else r.messages[-1]["content"]
            answer = self.answers[content]
            if r.messages is not None and r.thinking:
                answer = f"Let me think about this.\nDone.\n</think>\n{answer}"
            n = r.sampling.n
            tokens = [len(answer.split())] * n
            out.append(GenerationResponse(r.key, [answer] * n, finish_reasons=["stop"] * n, completion_tokens=tokens))
        return out

    def close(self) -> None:
        pass


def _config(tmp_path: Path, shared: Path, benchmarks: list[dict], **extra) -> EvalConfig:
    body = {
        "name": "test",
        "model": {"kind": "openai", "model": "scripted", "base_url": "http://127.0.0.1:9/v1"},
        "output_dir": str(tmp_path / "runs"),
        "data_dir": str(shared),
        "sampling": {"max_tokens": 16},
        "benchmarks": benchmarks,
        **extra,
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return load_eval_config(path)


def _read_samples(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / SAMPLES_FILE).read_text(encoding="utf-8").splitlines()]


def _check_summary(summary: dict) -> None:
    assert set(summary) == {"model", "benchmarks"}
    for entry in summary["benchmarks"]:
        assert set(entry) == SUMMARY_KEYS
        assert 0 <= entry["ci_low"] <= entry["score"] <= entry["ci_high"] <= 1, entry


# ---------------------------------------------------------------------------------------------------------------------
# Confidence intervals against independent computations
# ---------------------------------------------------------------------------------------------------------------------


def _wilson_by_inversion(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson interval by definition: the p where the score statistic |p_hat - p| / sqrt(p(1-p)/n) equals z."""
    p_hat = successes / n

    def outside(p: float) -> bool:
        return abs(p_hat - p) > z * math.sqrt(p * (1 - p) / n)

    def bisect(lo: float, hi: float, lo_outside: bool) -> float:
        for _ in range(200):
            mid = (lo + hi) / 2
            if outside(mid) == lo_outside:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    low = 0.0 if successes == 0 else bisect(1e-15, p_hat, True)
    high = 1.0 if successes == n else bisect(p_hat, 1 - 1e-15, False)
    return low, high


@pytest.mark.parametrize(("successes", "n"), [(0, 10), (5, 10), (10, 10), (1, 3), (37, 120), (999, 1000)])
def test_wilson_matches_score_test_inversion(successes, n):
    low, high = wilson_interval(successes, n)
    ref_low, ref_high = _wilson_by_inversion(successes, n)
    assert low == pytest.approx(ref_low, abs=1e-9)
    assert high == pytest.approx(ref_high, abs=1e-9)


def test_wilson_rejects_bad_counts():
    with pytest.raises(Nano2Error):
        wilson_interval(3, 2)
    with pytest.raises(Nano2Error):
        wilson_interval(0, 0)


def test_estimate_picks_wilson_for_binary_items_and_bootstrap_otherwise():
    binary = estimate([([1, 0, 1, 1], [1, 1, 1, 1])])
    assert binary.method == "wilson" and binary.score == 0.75
    assert (binary.ci_low, binary.ci_high) == pytest.approx(wilson_interval(3, 4))
    fractional = estimate([([0.5, 0.25, 1.0, 0.0], [1, 1, 1, 1])], resamples=4000)
    assert fractional.method.startswith("bootstrap") and fractional.score == pytest.approx(0.4375)
    assert fractional.ci_low < 0.4375 < fractional.ci_high
    ratio = estimate([([2, 0, 3], [3, 1, 3])])  # instruction-level: 5 of 7 instructions followed
    assert ratio.score == pytest.approx(5 / 7) and ratio.method.startswith("bootstrap")


def test_bootstrap_interval_is_seeded_and_matches_a_plain_numpy_bootstrap():
    import numpy as np

    values = np.array([0.1, 0.9, 0.4, 0.7, 0.3, 0.8])
    ours = bootstrap_interval([(values, np.ones(6))], resamples=3000, seed=7)
    assert ours == bootstrap_interval([(values, np.ones(6))], resamples=3000, seed=7)
    rng = np.random.default_rng(123)
    means = values[rng.integers(0, 6, size=(20000, 6))].mean(axis=1)
    reference = np.quantile(means, [0.025, 0.975])
    assert ours[0] == pytest.approx(reference[0], abs=0.03) and ours[1] == pytest.approx(reference[1], abs=0.03)


def test_scored_answer_cuts_the_reasoning_trace():
    assert scored_answer("trace\n</think>\nThe answer is 4", "chat", True) == "The answer is 4"
    assert scored_answer("still thinking when the tokens ran out", "chat", True) == ""
    assert scored_answer("<think>oops", "chat", False) == ""
    assert scored_answer("The answer is 4", "chat", None) == "The answer is 4"
    assert scored_answer("    return x\n", "completion", True) == "    return x\n"


# ---------------------------------------------------------------------------------------------------------------------
# Config errors
# ---------------------------------------------------------------------------------------------------------------------


def test_config_errors_name_the_field(tmp_path, cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x\nbenchmarks:\n  - {name: gsm9k}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"benchmarks\[0\]\.name.*unknown benchmark 'gsm9k'"):
        load_eval_config(bad)
    res = cli("eval", "run", bad)
    assert res.code == 2 and "error:" in res.err and "gsm9k" in res.err
    bad.write_text("model: x\nbenchmarks:\n  - {name: humaneval, pass_k: [1, 5]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"pass@5 needs n >= 5"):
        load_eval_config(bad)
    bad.write_text("model: /nonexistent/ckpt\nbenchmarks:\n  - {name: gsm8k}\n", encoding="utf-8")
    res = cli("eval", "run", bad)
    assert res.code == 2 and "checkpoint /nonexistent/ckpt not found" in res.err


# ---------------------------------------------------------------------------------------------------------------------
# Gold answers through the whole runner score 100%
# ---------------------------------------------------------------------------------------------------------------------


def _ifeval_keys_followed_by_oracle(shared: Path, count: int) -> tuple[list[str], dict[str, str]]:
    """IFEval keys whose oracle response follows every instruction (strict and loose), with those responses."""
    by_mode = {}
    for mode in ("strict", "loose"):
        with gzip.open(shared / ORACLE.format(mode=mode), "rt", encoding="utf-8") as handle:
            by_mode[mode] = {row["prompt"]: row for row in map(json.loads, handle)}
    keys, responses = [], {}
    for line in (shared / "evals/ifeval_input_data.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        strict, loose = by_mode["strict"].get(row["prompt"]), by_mode["loose"].get(row["prompt"])
        if strict and loose and strict["follow_all_instructions"] and loose["follow_all_instructions"]:
            keys.append(f"ifeval/{row['key']}")
            responses[row["prompt"]] = strict["response"]
        if len(keys) == count:
            break
    return keys, responses


def _gold_answers(shared: Path, ifeval_responses: dict[str, str]) -> dict[str, str]:
    """prompt text (completion) or user message (chat) -> the gold response, built from the loaders' items."""
    from evals.benchmarks import load_benchmark

    answers = dict(ifeval_responses)
    for item in load_benchmark("gsm8k", shared, shots=2):
        answers[item.prompt] = " " + item.reference.split("\n#### ")[0] + "\n#### " + item.answer
    for name in ("math500", "aime24", "mgsm"):
        for item in load_benchmark(name, shared):
            answers[item.messages[-1]["content"]] = f"So the final answer is $\\boxed{{{item.answer}}}$."
    for item in load_benchmark("mmlu_stem", shared):
        answers[item.messages[-1]["content"]] = f"The options compare as follows.\nAnswer: {item.answer}"
    for item in load_benchmark("humaneval", shared):
        answers[item.messages[-1]["content"]] = f"Here it is:\n```python\n{item.prompt}{item.reference}\n```"
    for item in load_benchmark("mbpp", shared):
        answers[item.messages[-1]["content"]] = f"```python\n{item.reference}\n```\nThis passes the tests."
    return answers


@pytest.mark.realdata
def test_gold_answers_score_100_percent_through_the_runner(tmp_path, shared_data):
    ifeval_keys, ifeval_responses = _ifeval_keys_followed_by_oracle(shared_data, 3)
    benchmarks = [
        {"name": "gsm8k", "limit": 3, "prompt": "completion", "options": {"shots": 2}},
        {"name": "math500", "limit": 3},
        {"name": "aime24", "limit": 2},
        {"name": "mgsm", "limit": 1},  # all 11 languages
        {"name": "mmlu_stem", "limit": 3},
        {"name": "humaneval", "limit": 2, "sampling": {"n": 2}, "pass_k": [1, 2]},
        {"name": "mbpp", "limit": 2},
        {"name": "ifeval", "ids": ifeval_keys},
    ]
    cfg = _config(tmp_path, shared_data, benchmarks, sampling={"max_tokens": 64, "thinking": True}, batch_size=8)
    backend = GoldBackend(_gold_answers(shared_data, ifeval_responses))
    result = run_eval(cfg, backend=backend, output=tmp_path / "gold")

    _check_summary(result.summary)
    entries = {(e["name"], e["metric"]): e for e in result.summary["benchmarks"]}
    languages = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
    expected = {
        ("gsm8k", "accuracy"),
        ("math500", "accuracy"),
        ("aime24", "accuracy"),
        ("mgsm", "accuracy"),
        *((f"mgsm_{lang}", "accuracy") for lang in languages),
        ("mmlu_stem", "accuracy"),
        ("humaneval", "pass@1"),
        ("humaneval", "pass@2"),
        ("mbpp", "pass@1"),
        *(
            ("ifeval", metric)
            for metric in (
                "prompt_level_strict",
                "instruction_level_strict",
                "prompt_level_loose",
                "instruction_level_loose",
            )
        ),
    }
    assert set(entries) == expected
    wrong = {key: e["score"] for key, e in entries.items() if e["score"] != 1.0}
    assert not wrong, f"gold answers scored below 100%: {wrong}"
    assert entries[("mgsm", "accuracy")]["n"] == 11 and entries[("humaneval", "pass@1")]["n"] == 2
    samples = _read_samples(result.output_dir)
    assert len(samples) == result.planned_samples == 3 + 3 + 2 + 11 + 3 + 4 + 2 + 3
    assert all(s["correct"] for s in samples)
    assert {s["verdict"] for s in samples if s["benchmark"] in ("humaneval", "mbpp")} == {"passed"}
    math_sample = next(s for s in samples if s["benchmark"] == "math500")
    assert math_sample["extracted"] and "</think>" in math_sample["output"]


@pytest.mark.realdata
def test_multilingual_groups_and_their_average(tmp_path, shared_data):
    benchmarks = [
        {"name": "mgsm", "limit": 2, "options": {"languages": ["en", "de", "ja"]}},
        {"name": "m_ifeval", "limit": 1, "options": {"languages": ["es", "ja"]}},
    ]
    cfg = _config(tmp_path, shared_data, benchmarks)
    # problem 0 of every MGSM language is the same problem, answer 18; problem 1 (answer 3) is then wrong
    result = run_eval(cfg, backend=CountingBackend(text="\\boxed{18}"), output=tmp_path / "run")
    _check_summary(result.summary)
    entries = {(e["name"], e["metric"]): e for e in result.summary["benchmarks"]}
    for lang in ("en", "de", "ja"):
        assert entries[(f"mgsm_{lang}", "accuracy")]["score"] == 0.5
    family = entries[("mgsm", "accuracy")]
    assert family["score"] == 0.5 and family["n"] == 6
    assert (family["ci_low"], family["ci_high"]) == pytest.approx(wilson_interval(3, 6))
    groups = {name for name, _ in entries if name.startswith("m_ifeval")}
    assert groups == {"m_ifeval", "m_ifeval_es", "m_ifeval_ja"}
    for name in groups:
        assert {m for n, m in entries if n == name} == {
            "prompt_level_strict",
            "instruction_level_strict",
            "prompt_level_loose",
            "instruction_level_loose",
        }
    with pytest.raises(Nano2Error, match="unknown language"):
        run_eval(
            _config(tmp_path, shared_data, [{"name": "m_ifeval", "options": {"languages": ["de"]}}]),
            backend=CountingBackend(),
            output=tmp_path / "bad",
        )


# ---------------------------------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_resume_generates_only_what_is_missing(tmp_path, shared_data):
    benchmarks = [{"name": "math500", "limit": 3}, {"name": "mmlu_stem", "limit": 2}]
    cfg = _config(tmp_path, shared_data, benchmarks)
    out = tmp_path / "run"

    first = CountingBackend(text="The answer is \\boxed{7}")
    result = run_eval(cfg, backend=first, output=out)
    assert (result.generated, result.reused) == (5, 0) and first.calls == 1

    again = CountingBackend()
    result = run_eval(cfg, backend=again, output=out)
    assert again.calls == 0 and (result.generated, result.reused) == (0, 5)

    # more samples per item: only the new sample indices are generated, with seeds continuing from seed + 1
    more = cfg.model_copy(update={"sampling": cfg.sampling.model_copy(update={"n": 3})})
    extra = CountingBackend()
    result = run_eval(more, backend=extra, output=out)
    assert result.generated == 10 and len(extra.requests) == 5
    assert {(r.sampling.seed, r.sampling.n) for r in extra.requests} == {(1, 2)}

    # different generation settings are different samples
    longer = cfg.model_copy(update={"sampling": cfg.sampling.model_copy(update={"max_tokens": 32})})
    fresh = CountingBackend()
    assert run_eval(longer, backend=fresh, output=out).generated == 5

    # a line cut by a kill is dropped and its sample generated again
    path = out / SAMPLES_FILE
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:20], encoding="utf-8")
    repair = CountingBackend()
    result = run_eval(longer, backend=repair, output=out)
    assert result.dropped_lines == 1 and result.generated == 1
    assert all(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())


@pytest.mark.realdata
def test_failed_requests_are_reported_not_stored_and_retried(tmp_path, shared_data):
    from evals.benchmarks import load_benchmark

    cfg = _config(tmp_path, shared_data, [{"name": "math500", "limit": 3}])
    failing_item = load_benchmark("math500", shared_data)[1]
    needle = failing_item.messages[-1]["content"][:60]
    result = run_eval(cfg, backend=CountingBackend(fail_keys=[needle]), output=tmp_path / "run")
    assert result.generated == 2 and len(result.errors) == 1 and failing_item.id in result.errors[0]
    entry = result.summary["benchmarks"][0]
    assert entry["n"] == 2
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["extra"]["request_error_count"] == 1 and manifest["extra"]["missing_items"] == {"math500": 1}
    retry = CountingBackend()
    result = run_eval(cfg, backend=retry, output=tmp_path / "run")
    assert result.generated == 1 and not result.errors and result.summary["benchmarks"][0]["n"] == 3


@pytest.mark.realdata
def test_rescore_scores_stored_outputs_again_without_generating(tmp_path, shared_data):
    from evals.benchmarks import load_benchmark

    cfg = _config(tmp_path, shared_data, [{"name": "math500", "limit": 2}])
    out = tmp_path / "run"
    run_eval(cfg, backend=CountingBackend(text="no answer here"), output=out)
    assert json.loads((out / "summary.json").read_text())["benchmarks"][0]["score"] == 0.0
    golds = {item.id: item.answer for item in load_benchmark("math500", shared_data)[:2]}
    records = _read_samples(out)
    for record in records:  # as if an older scorer had missed answers that were right
        record["output"] = f"Thus \\boxed{{{golds[record['item_id']]}}}"
    (out / SAMPLES_FILE).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    backend = CountingBackend()
    result = run_eval(cfg, backend=backend, output=out, rescore=True)
    assert backend.calls == 0 and result.rescored == 2 and result.generated == 0
    assert result.summary["benchmarks"][0]["score"] == 1.0
    assert all(r["correct"] and r["verdict"] == "correct" for r in _read_samples(out))


# ---------------------------------------------------------------------------------------------------------------------
# A real tiny checkpoint through the CLI
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_tiny_checkpoint_run_writes_results_report_and_manifest_and_resumes(
    tmp_path, shared_data, tiny_checkpoint_dir, cli
):
    config = {
        "name": "tiny-test",
        "model": "unused/by/this/test",
        "output_dir": str(tmp_path / "evals"),
        "data_dir": str(shared_data),
        "sampling": {"max_tokens": 12, "thinking": False},
        "torch_threads": 1,
        "sandbox": {"wall_s": 10, "cpu_s": 5, "memory_mb": 512},
        "benchmarks": [
            {"name": "gsm8k", "limit": 2, "prompt": "completion", "options": {"shots": 1}},
            {"name": "math500", "limit": 2},
            {"name": "mgsm", "limit": 1, "options": {"languages": ["en", "de"]}},
            {"name": "mmlu_stem", "limit": 2},
            {"name": "humaneval", "limit": 2},
            {"name": "mbpp", "limit": 2},
            {"name": "ifeval", "limit": 2},
        ],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    res = cli("eval", "run", path, "--model", tiny_checkpoint_dir)
    assert res.code == 0, res.err
    out = tmp_path / "evals" / tiny_checkpoint_dir.name  # OUTPUT_DIR/LABEL by default
    assert "14 planned, 0 reused, 14 generated" in res.out

    summary = json.loads((out / "summary.json").read_text())
    _check_summary(summary)
    assert summary["model"] == tiny_checkpoint_dir.name
    names = {e["name"] for e in summary["benchmarks"]}
    assert names == {"gsm8k", "math500", "mgsm", "mgsm_en", "mgsm_de", "mmlu_stem", "humaneval", "mbpp", "ifeval"}
    samples = _read_samples(out)
    assert len(samples) == 14
    required = {"benchmark", "item_id", "sample", "settings", "output", "extracted", "verdict", "correct", "tokens"}
    assert all(required <= set(s) for s in samples)
    assert all(0 < s["tokens"] <= 12 for s in samples)
    assert {s["verdict"] for s in samples if s["benchmark"] == "humaneval"} <= {"failed", "error", "passed"}
    for name in ("report.md", "scores.png"):
        assert (out / name).stat().st_size > 0
    assert "| mgsm_de | accuracy |" in (out / "report.md").read_text()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "eval" and manifest["name"] == tiny_checkpoint_dir.name
    inputs = [Path(i["path"]).resolve() for i in manifest["inputs"]]
    assert inputs[0] == tiny_checkpoint_dir.resolve() and manifest["inputs"][0]["manifest_id"]
    assert shared_data.resolve() / "multilingual" / "mgsm_de.tsv" in inputs
    assert shared_data.resolve() / "evals" / "humaneval.jsonl.gz" in inputs
    assert manifest["stats"]["documents"] == 14
    assert manifest["producer"]["config"]["model"]["model"] == str(tiny_checkpoint_dir)
    assert {f["path"] for f in manifest["files"]} >= {"samples.jsonl", "summary.json", "report.md", "scores.png"}

    counting = CountingBackend()  # the rerun must not generate anything
    result = run_eval(load_eval_config(path), model_override=str(tiny_checkpoint_dir), backend=counting)
    assert counting.calls == 0 and result.generated == 0 and result.reused == 14
    assert result.summary == summary


# ---------------------------------------------------------------------------------------------------------------------
# Report comparing runs
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_report_compares_runs_side_by_side(tmp_path, shared_data, cli):
    benchmarks = [{"name": "math500", "limit": 4}, {"name": "mmlu_stem", "limit": 4}]
    cfg = _config(tmp_path, shared_data, benchmarks)
    gold = GoldBackend(_gold_answers(shared_data, {}))
    runs = tmp_path / "evals"
    parent = run_eval(cfg.model_copy(update={"label": "parent"}), backend=gold, output=runs / "parent")
    child = run_eval(cfg.model_copy(update={"label": "child"}), backend=CountingBackend(), output=runs / "child")
    res = cli("eval", "report", parent.output_dir, child.output_dir, "-o", tmp_path / "report")
    assert res.code == 0, res.err
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| benchmark | metric | n | parent | child | child - parent |" in markdown
    assert "| math500 | accuracy | 4 | 100.0 [51.0, 100.0] | 0.0 [0.0, 49.0] | -100.0 |" in markdown
    assert (tmp_path / "report" / "scores.png").stat().st_size > 0
    res = cli("eval", "report", runs, "-o", tmp_path / "report2")  # a directory above both runs
    assert res.code == 0 and "| benchmark | metric | n | child | parent | parent - child |" in res.out
    res = cli("eval", "report", tmp_path / "nothing", "-o", tmp_path / "report3")
    assert res.code == 2 and "no such directory" in res.err
