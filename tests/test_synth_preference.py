"""The preference stage on real GSM8K/MBPP train problems with a backend that answers each sample to a plan: pairs
of the first verified and the first failed sample, drops with reasons, the reference fallback, the cache, and the
contract with DPO's reader (train/dpo.py reads the written directory)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from model.tokenizer import load_tokenizer
from nano2.errors import ConfigError
from nano2.manifest import read_manifest
from synthetic.backends.base import GenerationResponse
from synthetic.config import SynthConfig, load_synth_config
from synthetic.records import read_chat_rows
from synthetic.runner import run_synthesis
from synthetic.tasks.common import token_counter
from train.dpo import read_preference_examples
from train.post import parquet_files
from verify.gsm8k import gsm8k_gold

pytestmark = pytest.mark.realdata

REPO = Path(__file__).resolve().parent.parent
# what each of the first GSM8K train problems' four samples are, by sample index
MATH_PLANS = [
    ["wrong", "right", "unclosed", "right"],  # chosen 1, rejected 0
    ["unclosed", "nested", "right", "wrong"],  # chosen 2, rejected 1 (a malformed trace, kept as generated)
    ["right", "right", "right", "right"],  # no_rejected
    ["wrong", "wrong", "wrong", "wrong"],  # reference fallback (or no_chosen)
    ["unclosed", "cut", "error", "unclosed"],  # no_usable_samples
    ["cut", "right", "wrong", "right"],  # chosen 1, rejected 2
]
CODE_PLAN = ["no_code", "right", "right", "wrong"]  # chosen 1, rejected 0
NESTED = "First try.\n</think>\nSecond try.\n</think>\nThe answer is \\boxed{{{answer}}}."


def first_problems(shared_data: Path) -> tuple[list[dict], dict]:
    with gzip.open(shared_data / "evals" / "gsm8k_train.jsonl.gz", "rt", encoding="utf-8") as fh:
        math = [json.loads(next(fh)) for _ in MATH_PLANS]
    with (shared_data / "evals" / "mbpp_full.jsonl").open(encoding="utf-8") as fh:
        code = next(row for row in map(json.loads, fh) if row["task_id"] >= 601)
    return math, code


class PlannedBackend:
    """Answers sample i (seed 0 + i) of a problem as its plan says; counts the requests it answers."""

    name = model = "planned"

    def __init__(self, math: list[dict], code: dict):
        pairs = zip(math, MATH_PLANS, strict=True)
        self.math = {row["question"].strip(): (gsm8k_gold(row["answer"]), plan) for row, plan in pairs}
        self.code = (code["text"].strip(), code["code"].replace("\r\n", "\n").replace("\t", "    "))
        self.answered = 0

    def completion(self, user: str, sample: int) -> tuple[str, str] | None:
        """(text, finish reason) of one sample; None for a failed request."""
        if user.startswith("Write a Python function"):
            assert user.split("Task: ", 1)[1].strip() == self.code[0]
            kind = CODE_PLAN[sample]
            if kind == "no_code":
                return "I am not sure how.\n</think>\nNo code today.", "stop"
            body = self.code[1] if kind == "right" else "def max_chain_length(arr, n):\n    return 0"
            return f"Compare the pairs in order.\n</think>\nHere it is:\n```python\n{body}\n```", "stop"
        gold, plan = self.math[user.split("\\boxed{ANSWER}.\n\n", 1)[1].strip()]
        kind = plan[sample]
        answer = str(int(gold) + 1) if kind == "wrong" else gold
        if kind == "error":
            return None
        if kind == "unclosed":
            return "Let me think about it for a long while and", "stop"
        if kind == "nested":
            return NESTED.format(answer=answer), "stop"
        text = f"Add up the amounts.\nThey give {answer}.\n</think>\nThe answer is \\boxed{{{answer}}}."
        return text, "length" if kind == "cut" else "stop"

    def generate(self, requests):
        out = []
        for r in requests:
            self.answered += 1
            sample = r.sampling.seed
            assert r.thinking is True and r.sampling.temperature == 0.8
            answer = self.completion(r.messages[-1]["content"], sample)
            if answer is None:
                out.append(GenerationResponse(key=r.key, texts=[], error="HTTP 500: overloaded", attempts=3))
                continue
            text, finish = answer
            out.append(GenerationResponse(key=r.key, texts=[text], finish_reasons=[finish], prompt_tokens=10,
                                          completion_tokens=[len(text.split())]))  # fmt: skip
        return out

    def close(self) -> None:
        return


def make_config(shared_data: Path, root: Path, retry_failed: bool = True, **preference) -> SynthConfig:
    cfg = {
        "name": "synth-test",
        "output_dir": str(root / "synthetic"),
        "chat_dir": str(root / "chat"),
        "backend": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "planned"},
        "batch_size": 5,  # batches cut across problems: grouping must not depend on them
        "retry_failed": retry_failed,
        "preference": {
            "enabled": True,
            "inputs": [
                {"path": str(shared_data / "evals" / "gsm8k_train.jsonl.gz"), "kind": "math", "limit": len(MATH_PLANS)},
                {"path": str(shared_data / "evals" / "mbpp_full.jsonl"), "kind": "code", "text_key": "text",
                 "id_key": "task_id", "answer_key": None, "tests_key": "test_list", "setup_key": "test_setup_code",
                 "id_range": [601, 974], "limit": 1},
            ],
            "settings": {"max_output_tokens": 448, "temperature": 0.8, "samples": 4},
            **preference,
        },
    }  # fmt: skip
    return SynthConfig.model_validate(cfg)


def run(cfg: SynthConfig, backend: PlannedBackend):
    return run_synthesis(cfg, backend_factory=lambda: backend)


@pytest.fixture
def problems(shared_data):
    return first_problems(shared_data)


@pytest.fixture
def planned(problems):
    return PlannedBackend(*problems)


def by_problem(rows: list[dict], math: list[dict]) -> dict[int, dict]:
    """Rows keyed by the index of their GSM8K problem (-1: the MBPP problem)."""
    index = {row["question"].strip(): i for i, row in enumerate(math)}
    out = {}
    for r in rows:
        user = r["messages"][-1]["content"]
        out[index[user.split("\\boxed{ANSWER}.\n\n", 1)[1].strip()] if "\\boxed{ANSWER}" in user else -1] = r
    return out


def test_pairs_drops_and_manifest(shared_data, tmp_path, problems, planned):
    math = problems[0]
    cfg = make_config(shared_data, tmp_path)
    result = run(cfg, planned)
    assert planned.answered == result.requests.sent == (len(MATH_PLANS) + 1) * 4
    rows = read_chat_rows(cfg.stage_dir("preference"), subset="preference")
    got = by_problem(rows, math)
    assert sorted(got) == [-1, 0, 1, 3, 5]
    golds = [gsm8k_gold(row["answer"]) for row in math]

    def sample_target(i: int, answer: str) -> str:
        return f"<think>\nAdd up the amounts.\nThey give {answer}.\n</think>\nThe answer is \\boxed{{{answer}}}."

    right = {i: sample_target(i, golds[i]) for i in range(len(golds))}
    wrong = {i: sample_target(i, str(int(golds[i]) + 1)) for i in range(len(golds))}
    expected = {  # problem: (chosen, rejected, chosen sample, rejected sample, rejected reason)
        0: (right[0], wrong[0], 1, 0, "wrong_answer"),
        1: (right[1], "<think>\n" + NESTED.format(answer=golds[1]), 2, 1, "nested_think"),
        5: (right[5], wrong[5], 1, 2, "wrong_answer"),
    }
    for i, (chosen, rejected, chosen_sample, rejected_sample, reason) in expected.items():
        r = got[i]
        assert (r["chosen"], r["rejected"]) == (chosen, rejected)
        meta = r["metadata"]
        assert (meta["chosen_origin"], meta["chosen_sample"], meta["rejected_sample"]) == (
            "policy_sample", chosen_sample, rejected_sample)  # fmt: skip
        assert meta["rejected_reason"] == reason and meta["reference"] == golds[i]
    assert got[5]["metadata"]["sample_verdicts"] == ["output_truncated", "verified", "wrong_answer", "verified"]
    # nothing verified: the GSM8K reference solution, calculator marks removed, is chosen
    fallback = got[3]
    assert fallback["metadata"]["chosen_origin"] == "reference_solution"
    assert fallback["metadata"]["chosen_sample"] is None
    reference_lines = math[3]["answer"].splitlines()
    assert fallback["chosen"].startswith("<think>\n") and "<<" not in fallback["chosen"]
    assert fallback["chosen"].endswith(f"</think>\n\\boxed{{{golds[3]}}}")
    assert reference_lines[0].split("<<")[0].strip() in fallback["chosen"] and fallback["rejected"] == wrong[3]
    # code: the reference code passes the real tests in a subprocess, the answer without code is rejected
    code_row = got[-1]
    assert "```python\nclass Pair(object):" in code_row["chosen"] and code_row["rejected"].endswith("No code today.")
    assert code_row["metadata"]["sample_verdicts"] == ["no_code_block", "verified", "verified", "tests_failed"]
    for r in rows:
        assert r["task"] == "preference" and r["reasoning"] is True
        assert [m["role"] for m in r["messages"]] == ["system", "user"] and r["messages"][0]["content"] == "/think"
        assert r["id"] == f"preference/{r['source_id']}" and json.loads(r["sampling"])["temperature"] == 0.8
    # every problem: a row or a counted drop with its reason
    manifest = read_manifest(cfg.stage_dir("preference"))
    drops = manifest.extra["drops"]["preference"]
    assert drops == {"no_rejected": 1, "no_usable_samples": 1}
    assert manifest.kind == "preference" and manifest.stats.documents == len(rows) == 5
    assert manifest.stats.by["task"]["preference"].documents == 5 and manifest.extra["chosen_origin"] == {
        "policy_sample": 4, "reference_solution": 1}  # fmt: skip
    assert sum(manifest.extra["sample_verdicts"].values()) == result.requests.jobs == 28
    counter = token_counter("default")
    assert all(r["metadata"]["token_count"] == counter.count(r["text"]) for r in rows)
    assert manifest.stats.tokens == sum(r["metadata"]["token_count"] for r in rows)
    decisions = cfg.stage_dir("preference").with_name("preference.decisions")  # beside the rows, never inside
    assert sorted(p.name for p in decisions.iterdir()) == ["manifest.json", "preference"]


def test_rerun_is_cached_and_fallback_off_drops_no_chosen(shared_data, tmp_path, problems, planned):
    cfg = make_config(shared_data, tmp_path)
    run(cfg, planned)
    files = {f.path: f.sha256 for f in read_manifest(cfg.stage_dir("preference")).files}
    planned.answered = 0
    again = run(cfg, planned)  # only the request that failed is sent again (retry_failed), and fails again
    assert planned.answered == again.requests.sent == again.requests.failed == 1 and again.requests.cached == 27
    assert {f.path: f.sha256 for f in read_manifest(cfg.stage_dir("preference")).files} == files
    planned.answered = 0
    off = run(make_config(shared_data, tmp_path, reference_fallback=False, retry_failed=False), planned)
    assert planned.answered == 0 and off.requests.cached == 27  # the fallback decides rows, not what is asked
    assert off.drops["preference"] == {"no_chosen": 1, "no_rejected": 1, "no_usable_samples": 1}
    rows = by_problem(read_chat_rows(cfg.stage_dir("preference")), problems[0])
    assert sorted(rows) == [-1, 0, 1, 5]


def test_rows_load_in_dpo_reader(shared_data, tmp_path, problems, planned, tiny_tokenizer_dir):
    """The contract: DPO's own loader reads the stage directory and sees every row, each side tokenized as the
    prompt followed by exactly the generated completion."""
    cfg = make_config(shared_data, tmp_path)
    run(cfg, planned)
    directory = cfg.stage_dir("preference")
    rows = read_chat_rows(directory)
    tokenizer = load_tokenizer(tiny_tokenizer_dir)
    examples, report = read_preference_examples(parquet_files([directory], None, "data"), tokenizer, 4096, None)
    assert report.read == len(examples) == len(rows) == 5 and not report.dropped
    assert report.variants == {"reasoning": 5}
    for row, example in zip(rows, examples, strict=True):
        decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=False)  # noqa: E731
        assert decode(example["prompt_ids"] + example["chosen_ids"]) == row["text"]
        completion = row["rejected"].removeprefix("<think>\n")
        assert decode(example["rejected_ids"]) == f"{completion}\n<SPECIAL_12>\n"
        assert decode(example["prompt_ids"]).endswith("<think>\n")


def test_configs_enable_the_stage_and_reject_pairs_without_contrast(tmp_path):
    tiny = load_synth_config(REPO / "synthetic" / "configs" / "tiny.yaml")
    assert tiny.preference.enabled and tiny.preference.settings.samples == 4 and tiny.preference.reference_fallback
    assert tiny.preference.settings.max_output_tokens == tiny.reasoning.settings.max_output_tokens
    assert [(s.kind, s.limit) for s in tiny.preference.inputs] == [("math", 8), ("code", 4)]
    assert tiny.preference.inputs[1].id_range == (601, 974)
    assert "preference" in tiny.enabled_stages() and tiny.stage_dir("preference").name == "preference"
    full = load_synth_config(REPO / "synthetic" / "configs" / "nano2.yaml")
    assert full.preference.enabled and full.preference.settings.samples == 8
    base = yaml.safe_load((REPO / "synthetic" / "configs" / "tiny.yaml").read_text(encoding="utf-8"))
    for change, message in [
        ({"reference_fallback": False, "settings": {"samples": 1, "temperature": 0.8}}, "samples must be >= 2"),
        ({"settings": {"samples": 4, "temperature": 0.0}}, "temperature must be > 0"),
        ({"inputs": []}, "preference is enabled but has no inputs"),
    ]:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**base, "preference": {**base["preference"], **change}}), encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_synth_config(path)


def test_mismatched_reference_is_the_rejected_fallback():
    from synthetic.tasks import preference as pf

    verdicts = [pf.unusable_sample(0, "output_truncated"), pf.unusable_sample(1, "unclosed_think")]
    assert pf.choose_pair(verdicts, "<think>\nmine\n</think>\n\\boxed{3}").drop == "no_usable_samples"
    pair = pf.mismatched_pair("<think>\nmine\n</think>\n\\boxed{3}", "<think>\nother\n</think>\n\\boxed{5}", {})
    assert pair.ok and pair.value.rejected_reason == "mismatched_reference"
    assert pair.value.chosen.endswith("{3}") and pair.value.rejected.endswith("{5}")
