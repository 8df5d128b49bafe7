"""Synthetic tasks on real data: GSM8K train solutions as traces (truncation, verification), MBPP train code
(test runs), MGSM human translations (language check), and the teacher demonstrations built from real sources."""

from __future__ import annotations

import csv
import gzip
import json

import pytest

from synthetic.records import read_chat_rows
from synthetic.tasks.common import QAPair, format_qa_pairs, parse_qa_pairs, token_counter
from synthetic.tasks.reasoning import gsm8k_trace, split_reasoning, verify_code, verify_math
from synthetic.tasks.rephrase import parse_rephrase
from synthetic.tasks.translate import detect_language, parse_translation
from synthetic.tasks.truncate import cut_at_line_boundary, truncated_sample
from verify.gsm8k import gsm8k_gold
from verify.math import stated_answer as final_answer

pytestmark = pytest.mark.realdata


def _gsm8k(shared_data, n: int) -> list[dict]:
    rows = []
    with gzip.open(shared_data / "evals" / "gsm8k_train.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def _mgsm(shared_data, language: str, n: int = 40) -> list[tuple[str, str]]:
    with open(shared_data / "multilingual" / f"mgsm_{language}.tsv", encoding="utf-8", newline="") as fh:
        return [(q, a) for q, a in list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]]


# ----------------------------------------------------------------------------------------------- truncation


def test_truncated_gsm8k_traces_respect_budgets_and_keep_the_answer(shared_data):
    counter = token_counter("default")
    rows = _gsm8k(shared_data, 300)
    cuts = 0
    for i, row in enumerate(rows):
        trace, answer = gsm8k_trace(row["answer"])
        assert answer.startswith("####")
        lines = trace.split("\n")
        for budget in (8, 16, 24, 40):
            cut = cut_at_line_boundary(trace, budget, counter)
            if not cut.ok:
                assert cut.drop in ("within_budget", "no_line_boundary_within_budget")
                if cut.drop == "within_budget":
                    assert counter.count(trace) <= budget
                else:
                    assert counter.count(lines[0].rstrip()) > budget
                continue
            cuts += 1
            kept = cut.value
            k = cut.details["kept_lines"]
            assert kept == "\n".join(lines[:k]).rstrip()  # whole lines, a prefix of the trace
            assert 0 < k < len(lines)
            assert counter.count(kept) <= budget  # the budget, in tokens
            assert counter.count("\n".join(lines[: k + 1]).rstrip()) > budget  # and the longest such prefix
            sample = truncated_sample(trace, answer, budget, budget, 0, f"gsm8k/{i}", counter)
            target = sample.value
            assert target == f"<think>\n{kept}\n</think>\n{answer}"
            assert target.endswith(answer)  # the `#### N` line survives every cut
            split = split_reasoning(target)
            assert split.ok and split.value == (kept, answer)
            assert verify_math(split.value[1], gsm8k_gold(row["answer"])).ok  # and is still the verified answer
    assert cuts > 300  # most solutions are long enough to be cut at these budgets


def test_budgets_are_sampled_within_the_configured_range(shared_data):
    counter = token_counter("default")
    budgets = []
    for i, row in enumerate(_gsm8k(shared_data, 200)):
        trace, answer = gsm8k_trace(row["answer"])
        sample = truncated_sample(trace, answer, 10, 30, 7, f"gsm8k/{i}", counter)
        if sample.ok:
            budgets.append(sample.details["budget"])
            assert sample.details["kept_tokens"] <= sample.details["budget"]
    assert min(budgets) >= 10 and max(budgets) <= 30 and len(set(budgets)) > 10


# ----------------------------------------------------------------------------------------------- verification


def test_gsm8k_reference_solutions_verify_and_wrong_answers_do_not(shared_data):
    for row in _gsm8k(shared_data, 60):
        gold = gsm8k_gold(row["answer"])
        trace, answer_line = gsm8k_trace(row["answer"])
        assert verify_math(answer_line, gold).ok
        assert verify_math(f"So the total is \\boxed{{{gold}}}.", gold).ok
        wrong = str(int(float(gold)) + 1)
        assert verify_math(f"\\boxed{{{wrong}}}", gold).drop == "wrong_answer"
        completion = f"{trace}\n</think>\nThe answer is \\boxed{{{gold}}}."
        trace_back, answer = split_reasoning(completion).value
        assert trace_back == trace and final_answer(answer) == gold


def test_mbpp_train_reference_code_passes_its_tests_and_broken_code_fails(shared_data):
    lines = (shared_data / "evals" / "mbpp_full.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    train = [r for r in rows if 601 <= r["task_id"] <= 974][:5]
    for r in train:
        code = r["code"].replace("\r\n", "\n")
        assert verify_code(f"```python\n{code}\n```", r["test_list"], r["test_setup_code"]).ok, r["task_id"]
        broken = code + "\n\n" + "\n".join(f"def {name}(*a, **k):\n    return None" for name in _functions(code))
        assert verify_code(f"```python\n{broken}\n```", r["test_list"]).drop == "tests_failed"


def _functions(code: str) -> list[str]:
    import ast

    return [n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]


# ----------------------------------------------------------------------------------------------- translation


def _qa(pairs: list[tuple[str, str]]) -> list[QAPair]:
    return [QAPair(q, f"The answer is {a}.") for q, a in pairs]


@pytest.mark.parametrize("language", ["de", "fr", "es", "ru", "ja", "zh", "th"])
def test_real_translations_are_kept_in_their_language(shared_data, language):
    english = _mgsm(shared_data, "en", 30)
    translated = _mgsm(shared_data, language, 30)
    kept = 0
    for i in range(0, 30, 3):
        source = _qa(english[i : i + 3])
        output = format_qa_pairs([QAPair(q, a) for q, a in translated[i : i + 3]])
        parsed = parse_translation(output, source, language, min_score=0.65)
        kept += parsed.ok
        assert parsed.ok or parsed.drop == "language_low_score", parsed
    assert kept >= 9  # of 10 groups


def test_english_passed_off_as_german_is_dropped(shared_data):
    english = _mgsm(shared_data, "en", 30)
    german = _mgsm(shared_data, "de", 30)
    for i in range(0, 30, 3):
        source = _qa(english[i : i + 3])
        rewritten = format_qa_pairs([QAPair(q + " Please answer.", a) for q, a in english[i : i + 3]])
        parsed = parse_translation(rewritten, source, "de", min_score=0.65)
        assert parsed.drop == "wrong_language" and parsed.details["detected_language"] == "en"
        as_german = [QAPair(q, a) for q, a in german[i : i + 3]]
        french_claim = parse_translation(format_qa_pairs(as_german), source, "fr", 0.65)
        assert french_claim.drop == "wrong_language" and french_claim.details["detected_language"] == "de"
        fewer = format_qa_pairs([QAPair(q, a) for q, a in german[i : i + 2]])
        assert parse_translation(fewer, source, "de", 0.65).drop == "qa_structure_changed"
    assert detect_language(german[0][0])[0] == "de"


# ----------------------------------------------------------------------------------------------- teacher


def test_teacher_demonstrations_parse_and_use_no_eval_data(shared_data, tmp_path):
    from synthetic.teacher import TeacherSources, build_teacher_data

    out = tmp_path / "teacher"
    manifest = build_teacher_data(
        out,
        TeacherSources(
            gsm8k=shared_data / "evals" / "gsm8k_train.jsonl.gz",
            curated=[
                shared_data / "web" / "ccnet_cc_en_head_0091.jsonl",
                shared_data / "web" / "ccnet_cc_en_head_0174.jsonl",
            ],
            mbpp=shared_data / "evals" / "mbpp_full.jsonl",
        ),
        limit=12,
    )
    rows = read_chat_rows(out)
    gold = [gsm8k_gold(r["answer"]) for r in _gsm8k(shared_data, 12)]
    by_task = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append(r)
    expected = {"diverse_qa", "distill", "extract_knowledge", "knowledge_list", "wiki_paraphrase", "reasoning_sft",
                "long_context_qa"}  # fmt: skip
    assert set(by_task) == expected
    assert "translate" in manifest.extra["unavailable"]
    assert manifest.kind == "chat" and manifest.stats.documents == len(rows)
    assert manifest.stats.tokens == sum(r["metadata"]["token_count"] for r in rows)
    test_lines = (shared_data / "evals" / "gsm8k_test.jsonl").read_text(encoding="utf-8").splitlines()
    test_questions = {json.loads(line)["question"].strip() for line in test_lines}
    for r in rows:
        target = r["messages"][-1]["content"]
        user = r["messages"][1]["content"]
        assert r["model"] == "demonstration" and r["metadata"]["demonstration"] is True
        assert not any(q in user for q in test_questions)  # no GSM8K test problem anywhere
        if r["task"] in ("diverse_qa", "distill", "extract_knowledge", "knowledge_list", "wiki_paraphrase"):
            document = user.split("\n\n")[-1] if r["task"] != "diverse_qa" else user
            assert parse_rephrase(r["task"], target, document).ok, r["id"]
        elif r["task"] == "long_context_qa":
            assert parse_qa_pairs(target).ok
        elif r["reasoning"]:
            trace, answer = split_reasoning(target).value
            assert trace and verify_math(answer, gold[int(r["source_id"].split("/")[1])]).ok
            assert r["messages"][0]["content"] == "/think"
        else:
            assert r["messages"][0]["content"] == "/no_think"
            number = int(r["source_id"].split("/")[1])
            if r["source_id"].startswith("mbpp/"):
                assert 601 <= number <= 974
                tests = user.split("these tests:\n\n")[1].split("\n\nTask:")[0].splitlines()
                assert tests and verify_code(target, tests).ok
            else:
                assert verify_math(target, gold[number]).ok
    reasoning = by_task["reasoning_sft"]
    assert any(not r["reasoning"] for r in reasoning if r["source_id"].startswith("gsm8k/"))  # some empty traces
    assert any(r["source_id"].startswith("mbpp/") for r in reasoning)
