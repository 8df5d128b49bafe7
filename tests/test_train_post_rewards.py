"""Verifiable rewards: math answers against real GSM8K-train solutions, IFEval-style rules, TRL reward callables."""

from __future__ import annotations

import json
import random

import pytest

from model.tokenizer import load_tokenizer
from nano2.errors import Nano2Error
from train.rewards import (
    Constraint,
    InstructionReward,
    MathReward,
    all_followed,
    completion_answer,
    draw_constraints,
    load_gsm8k,
    math_reward,
    parse_constraints,
    with_instructions,
)


@pytest.fixture(scope="module")
def gsm8k_rows(shared_data):
    return load_gsm8k(shared_data / "evals" / "gsm8k_train.jsonl.gz", limit=60)


@pytest.mark.realdata
def test_real_gsm8k_answers_score_one_and_wrong_answers_zero(gsm8k_rows):
    assert gsm8k_rows[0]["gold"] == "72"  # Natalia's clips, the first training problem
    for row in gsm8k_rows:
        gold = row["gold"]
        wrong = str(int(float(gold)) + 1)
        assert math_reward(row["answer"], gold), row["answer"]  # the reference solution ends in '#### N'
        assert math_reward(f"Adding it up gives \\boxed{{{gold}}}.", gold)
        assert math_reward(f"So the result follows.\n#### {gold}", gold)
        assert not math_reward(f"Adding it up gives \\boxed{{{wrong}}}.", gold)
        assert not math_reward(f"#### {wrong}", gold)
        assert not math_reward("I do not know.", gold)


def test_answer_extraction_prefers_the_last_box_and_reads_formats(tmp_path):
    assert math_reward("first \\boxed{3} then corrected: \\boxed{1,000}", "1000")
    assert not math_reward("\\boxed{1000} but finally \\boxed{3}", "1000")
    assert math_reward("\\boxed{\\frac{1}{2}}", "0.5")
    assert math_reward("She earned $10.", "10")
    assert not math_reward("", "10")
    rows = tmp_path / "gsm8k.jsonl"
    rows.write_text(json.dumps({"question": "q", "answer": "1,200 + 5 = <<1200+5=1205>>1,205.\n#### 1,205"}) + "\n")
    assert load_gsm8k(rows)[0]["gold"] == "1205"  # verify.gsm8k's gold: separators removed
    rows.write_text(json.dumps({"question": "q", "answer": "no final line"}) + "\n")
    with pytest.raises(Nano2Error, match=r"not a GSM8K row .*no '#### N' line"):
        load_gsm8k(rows)


def test_completion_answer_drops_the_trace_and_needs_it_closed():
    thinking_prompt, plain_prompt = "<SPECIAL_11>Assistant\n<think>\n", "<SPECIAL_11>Assistant\n<think></think>"
    assert completion_answer("work 2+2\n</think>\n\\boxed{4}\n<SPECIAL_12>\nextra", thinking_prompt) == "\\boxed{4}"
    assert completion_answer("still thinking about \\boxed{4}", thinking_prompt) == ""
    assert completion_answer("The answer is 4.\n<SPECIAL_12>\n", plain_prompt) == "The answer is 4."


@pytest.mark.parametrize(
    ("constraint", "good", "bad"),
    [
        (Constraint(kind="max_words", n=5), "one two three", "one two three four five six"),
        (Constraint(kind="min_words", n=4), "one two three four", "one two"),
        (Constraint(kind="include_keywords", words=["apple", "river"]), "An Apple by the river.", "An apple."),
        (Constraint(kind="forbid_words", words=["very"]), "It is quite good.", "It is Very good."),
        (Constraint(kind="no_commas"), "Yes and no.", "Yes, and no."),
        (Constraint(kind="lowercase"), "all quiet here", "All quiet here"),
        (Constraint(kind="uppercase"), "ALL QUIET", "ALL quiet"),
        (Constraint(kind="end_with", phrase="That is all."), "Done. That is all.", "That is all. Done."),
        (Constraint(kind="bullet_points", n=2), "Intro\n* one\n* two", "* one\n* two\n* three"),
        (Constraint(kind="json_format"), '```json\n{"a": 1}\n```', "a: 1"),
        (Constraint(kind="quoted"), '"Hello there"', "Hello there"),
    ],
)
def test_each_constraint_accepts_and_rejects(constraint, good, bad):
    assert constraint.check(good)
    assert not constraint.check(bad)
    assert constraint.instruction()


def test_drawn_constraints_are_compatible_round_trip_and_appear_in_the_prompt():
    rng = random.Random(0)
    base = "Natalia sold clips to friends in April and then sold half as many clips in May."
    for _ in range(50):
        drawn = draw_constraints(rng, base, 3)
        kinds = {c.kind for c in drawn}
        assert len(kinds) == 3
        assert not {"lowercase", "uppercase"} <= kinds and not {"max_words", "min_words"} <= kinds
        assert parse_constraints(json.dumps([c.model_dump(exclude_none=True) for c in drawn])) == drawn
        prompt = with_instructions(base, drawn)
        assert prompt.startswith(base) and all(c.instruction() in prompt for c in drawn)
    with pytest.raises(Nano2Error, match="non-empty JSON list"):
        parse_constraints("[]")
    with pytest.raises(ValueError, match="needs 'n'"):
        Constraint(kind="max_words")


def test_trl_reward_callables_score_their_task_and_skip_the_other(tiny_tokenizer_dir):
    tokenizer = load_tokenizer(tiny_tokenizer_dir)
    prompts = ["<SPECIAL_11>Assistant\n<think>\n", "<SPECIAL_11>Assistant\n<think></think>"] * 2
    texts = ["2 and 2\n</think>\n\\boxed{4}\n<SPECIAL_12>\n", "\\boxed{5}\n<SPECIAL_12>\n",
             "never closed \\boxed{4}", "all lowercase words here\n<SPECIAL_12>\n"]  # fmt: skip
    ids = [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    tasks = ["math", "math", "math", "instruction_following"]
    constraints = ["", "", "", json.dumps([{"kind": "lowercase"}, {"kind": "min_words", "n": 10}])]
    golds = ["4", "4", "4", ""]
    kwargs = {"prompts": prompts, "completions": texts, "completion_ids": ids, "task": tasks, "gold": golds,
              "constraints": constraints}  # fmt: skip
    assert MathReward(tokenizer)(**kwargs) == [1.0, 0.0, 0.0, None]
    assert InstructionReward(tokenizer)(**kwargs) == [None, None, None, 0.5]
    assert all_followed("all lowercase words here", parse_constraints(constraints[3])) is False
