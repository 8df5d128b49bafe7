"""Parsers and validators of the synthetic tasks on good and malformed outputs; routing; hashed choices; prompts;
the chat-row training text contract."""

from __future__ import annotations

import pytest

from model.tokenizer import render_chat
from nano2.errors import Nano2Error
from synthetic.backends.base import with_reasoning_switch
from synthetic.prompting import load_prompt
from synthetic.records import chat_row, training_text
from synthetic.tasks import TASK_PROMPTS
from synthetic.tasks.common import (
    QAPair,
    check_prose,
    chosen,
    chunk_by_tokens,
    format_qa_pairs,
    parse_qa_pairs,
    pick_int,
    split_by_lines,
    token_counter,
)
from synthetic.tasks.long_context import append_qa, choose_chunks
from synthetic.tasks.reasoning import (
    gets_empty_trace,
    split_reasoning,
    verify_code,
    verify_math,
)
from synthetic.tasks.rephrase import (
    diverse_qa_text,
    parse_diverse_qa,
    parse_knowledge_list,
    parse_prose,
    route,
    strip_preamble,
)
from synthetic.tasks.translate import parse_translation, target_languages
from verify.code import fenced_code as last_code_block
from verify.math import last_boxed
from verify.math import stated_answer as final_answer

DOC = (
    "The Rhine is a river that rises in the Swiss Alps and flows into the North Sea. It is about 1,230 kilometres "
    "long. Basel, Cologne and Rotterdam lie on its banks, and barges carry coal and grain along it."
)


# ----------------------------------------------------------------------------------------------- QA format


def test_qa_pairs_good_outputs():
    text = (
        "Here are the questions and answers based on the provided text:\n"
        "- Question: How long is the Rhine?\nAnswer: About 1,230 kilometres.\n\n"
        "**Question:** Which of these cities lies on the Rhine?\nA) Paris\nB) Basel\n"
        "**Answer:** B) Basel.\nIt lies where the river turns north."
    )
    parsed = parse_qa_pairs(text)
    assert parsed.ok, parsed
    assert parsed.value == [
        QAPair("How long is the Rhine?", "About 1,230 kilometres."),
        QAPair(
            "Which of these cities lies on the Rhine?\nA) Paris\nB) Basel",
            "B) Basel.\nIt lies where the river turns north.",
        ),
    ]
    assert parse_qa_pairs(format_qa_pairs(parsed.value)).value == parsed.value  # the written form round-trips


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty_output"),
        ("   \n  ", "empty_output"),
        ("The Rhine is long.", "no_qa_pairs"),
        ("Answer: 5\nQuestion: what?", "answer_without_question"),
        ("Question: one?\nQuestion: two?\nAnswer: 2", "question_without_answer"),
        ("Question: How long is it?", "question_without_answer"),
        ("Question: How long?\nAnswer:", "empty_answer"),
        ("Question:\nAnswer: yes", "empty_question"),
        ("Intro one.\nIntro two.\nQuestion: a?\nAnswer: b", "text_before_first_question"),
        ("Question: a?\nAnswer: b\nAnswer: c", "answer_without_question"),
    ],
)
def test_qa_pairs_malformed_outputs(text, reason):
    parsed = parse_qa_pairs(text)
    assert not parsed.ok and parsed.drop == reason


def test_diverse_qa_drops_duplicate_questions_and_builds_the_document():
    dup = "Question: How long is the Rhine?\nAnswer: 1,230 km.\n\nQuestion: how long is the Rhine?\nAnswer: Long."
    assert parse_diverse_qa(dup, DOC).drop == "duplicate_questions"
    pairs = [QAPair(f"Question {i} about the Rhine?", f"Answer {i}.") for i in range(6)]
    texts = {diverse_qa_text(DOC, pairs, 3, seed=0, source_id=f"doc{i}") for i in range(40)}
    for text in texts:
        assert text.startswith(DOC + "\n\n")
        appended = parse_qa_pairs(text[len(DOC) :]).value
        assert 1 <= len(appended) <= 3 and set(appended) <= set(pairs)
    assert len({len(parse_qa_pairs(t[len(DOC) :]).value) for t in texts}) == 3  # 1, 2 and 3 pairs all occur
    assert diverse_qa_text(DOC, pairs, 3, 0, "doc1") == diverse_qa_text(DOC, pairs, 3, 0, "doc1")


# ----------------------------------------------------------------------------------------------- prose tasks


def test_prose_checks():
    good = "The Rhine rises in the Swiss Alps, runs for about 1,230 kilometres and reaches the North Sea."
    assert parse_prose(good, DOC).value == good
    assert parse_prose("Here is a paraphrased version:\n" + good, DOC).value == good  # lead-in removed
    assert parse_prose("", DOC).drop == "empty_output"
    assert parse_prose("A river.", DOC).drop == "too_short"
    assert parse_prose(DOC.upper(), DOC).drop == "copied_input"
    assert parse_prose("the river flows " * 20, DOC).drop == "repetitive_output"
    assert check_prose("one two three four five", "x", min_words=5).ok


def test_strip_preamble_keeps_content_lines():
    assert strip_preamble("Sure! Here is the rewritten text:\nThe Rhine.") == "The Rhine."
    assert strip_preamble("Heres the thing: rivers are long.") == "Heres the thing: rivers are long."


def test_knowledge_list():
    out = (
        "- The Rhine rises in the Swiss Alps.\n- It is about 1,230 kilometres long,\n  measured to the sea.\n"
        "* Barges carry coal."
    )
    parsed = parse_knowledge_list(out, DOC)
    assert parsed.ok
    assert parsed.value.splitlines() == [
        "- The Rhine rises in the Swiss Alps.",
        "- It is about 1,230 kilometres long, measured to the sea.",
        "- Barges carry coal.",
    ]
    assert parse_knowledge_list("The Rhine is long.\nIt flows north.", DOC).drop == "no_bullets"
    assert parse_knowledge_list("", DOC).drop == "empty_output"
    stray = "- Fact one is here.\nrandom line\nanother line\nyet another"
    assert parse_knowledge_list(stray, DOC).drop == "text_outside_list"
    assert parse_knowledge_list("- Same fact here.\n- same fact here.", DOC).drop == "duplicate_bullets"


# ----------------------------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"bucket": 19, "level": "high"}, ("diverse_qa", "distill", "extract_knowledge", "knowledge_list")),
        ({"bucket": 12}, ("diverse_qa", "distill", "extract_knowledge", "knowledge_list")),
        ({"bucket": 11, "level": "medium"}, ("wiki_paraphrase",)),
        ({"bucket": 0}, ("wiki_paraphrase",)),
        ({"bucket": "14"}, ("diverse_qa", "distill", "extract_knowledge", "knowledge_list")),
    ],
)
def test_routing_by_bucket(metadata, expected):
    assert route(metadata, high_bucket_min=12).value == expected


@pytest.mark.parametrize("metadata", [{}, {"level": "unscored"}, {"bucket": None}, {"bucket": True}, {"bucket": 25}])
def test_routing_without_a_usable_bucket_is_a_drop(metadata):
    assert route(metadata, high_bucket_min=12).drop == "no_quality_bucket"


def test_routing_threshold_and_task_lists_are_configurable():
    assert route({"bucket": 17}, high_bucket_min=18).value == ("wiki_paraphrase",)
    assert route({"bucket": 18}, 18, high_tasks=("diverse_qa",), low_tasks=()).value == ("diverse_qa",)
    assert route({"bucket": 3}, 18, high_tasks=("diverse_qa",), low_tasks=()).value == ()


# ----------------------------------------------------------------------------------------------- reasoning


def test_split_reasoning_shapes():
    assert split_reasoning("step 1\nstep 2\n</think>\nThe answer is 4.").value == ("step 1\nstep 2", "The answer is 4.")
    assert split_reasoning("<think>\nx = 2\n</think>\n\\boxed{2}").value == ("x = 2", "\\boxed{2}")
    assert split_reasoning("").drop == "empty_output"
    assert split_reasoning("thinking forever").drop == "unclosed_think"
    assert split_reasoning("a</think>b</think>c").drop == "nested_think"
    assert split_reasoning("a <think> b </think> c").drop == "nested_think"
    assert split_reasoning("</think>\nThe answer is 4.").drop == "empty_trace"
    assert split_reasoning("some thoughts\n</think>\n   ").drop == "empty_answer"


def test_final_answer_extraction():
    assert last_boxed(r"so \boxed{\frac{1}{2}} and finally \boxed{x^{2}+1}") == "x^{2}+1"
    assert last_boxed("no box here") is None
    assert final_answer("work\n#### 1,234") == "1,234"
    assert final_answer(r"The answer is \boxed{42}.") == "42"
    assert final_answer("The answer is 42.") is None


@pytest.mark.parametrize(
    ("answer", "gold", "reason"),
    [
        (r"The answer is \boxed{72}.", "72", None),
        ("#### 1,234", "1234", None),
        (r"\boxed{\frac{1}{2}}", "0.5", None),
        (r"\boxed{73}", "72", "wrong_answer"),
        ("It is 72.", "72", "no_final_answer"),
    ],
)
def test_verify_math(answer, gold, reason):
    parsed = verify_math(answer, gold)
    assert parsed.drop == reason


def test_verify_code_runs_the_tests_in_a_subprocess():
    tests = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]
    good = "Add them.\n```python\ndef add(a, b):\n    return a + b\n```"
    assert verify_code(good, tests).ok
    assert verify_code("```python\ndef add(a, b):\n    return a - b\n```", tests).drop == "tests_failed"
    assert verify_code("def add(a, b): return a + b", tests).drop == "no_code_block"
    loop = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
    assert verify_code(loop, tests, timeout_s=1).drop == "tests_timeout"
    assert verify_code(good, []).drop == "no_tests"
    assert last_code_block("```js\nx\n```\n```py\nfirst\n```\n```python\nsecond\n```") == "second"


def test_empty_trace_share_is_hashed_and_close_to_the_target():
    ids = [f"gsm8k/{i}" for i in range(4000)]
    picked = [gets_empty_trace(0.10, 0, i, 0) for i in ids]
    assert 0.085 <= sum(picked) / len(ids) <= 0.115
    assert picked == [gets_empty_trace(0.10, 0, i, 0) for i in reversed(ids)][::-1]  # order does not matter
    assert picked != [gets_empty_trace(0.10, 1, i, 0) for i in ids]  # the seed does
    assert not any(gets_empty_trace(0.0, 0, i, 0) for i in ids[:200])
    assert all(gets_empty_trace(1.0, 0, i, 0) for i in ids[:200])


def test_hashed_choices():
    values = [pick_int(1000, 2000, 0, f"t{i}") for i in range(3000)]
    assert min(values) >= 1000 and max(values) <= 2000
    assert min(values) < 1050 and max(values) > 1950  # spread over the whole range
    assert sum(chosen(0.25, 3, f"x{i}") for i in range(4000)) in range(900, 1100)


# ----------------------------------------------------------------------------------------------- tokens / chunks


def test_chunking_and_line_splitting_respect_token_limits():
    counter = token_counter("default")
    text = "\n".join(f"Line {i}: the Rhine carries barges of coal and grain past Cologne." for i in range(60))
    chunks = chunk_by_tokens(text, 64, counter)
    assert "".join(chunks) == text
    n = counter.count(text)
    assert len(chunks) == -(-n // 64)
    segments = split_by_lines(text, 100, counter)
    assert len(segments) > 1
    assert all(counter.count(s) <= 100 for s in segments)
    assert "\n".join(segments) == text  # cuts fall on line ends only
    assert split_by_lines("short", 100, counter) == ["short"]


def test_choose_chunks():
    assert choose_chunks(30, 0.10, 0, "doc") == sorted(choose_chunks(30, 0.10, 0, "doc"))
    assert len(choose_chunks(30, 0.10, 0, "doc")) == 3
    assert len(choose_chunks(4, 0.10, 0, "doc")) == 1  # at least one chunk
    assert choose_chunks(0, 0.10, 0, "doc") == []
    assert choose_chunks(100, 0.10, 0, "a") != choose_chunks(100, 0.10, 0, "b")
    text = append_qa("Body text.\n", [QAPair("Q?", "A.")])
    assert text == "Body text.\n\nQuestion: Q?\nAnswer: A."


# ----------------------------------------------------------------------------------------------- translation


def test_translation_structure_and_language_checks():
    source = [QAPair("How long is the Rhine?", "It is about 1,230 kilometres long."),
              QAPair("Where does the Rhine rise?", "It rises in the Swiss Alps.")]  # fmt: skip
    german = (
        "Question: Wie lang ist der Rhein?\nAnswer: Er ist ungefähr 1.230 Kilometer lang.\n\n"
        "Question: Wo entspringt der Rhein?\nAnswer: Er entspringt in den Schweizer Alpen."
    )
    kept = parse_translation(german, source, "de", min_score=0.5)
    assert kept.ok and kept.details["detected_language"] == "de"
    assert parse_translation(german, source, "fr", min_score=0.5).drop == "wrong_language"
    one_pair = german.split("\n\n")[0]
    assert parse_translation(one_pair, source, "de", 0.5).drop == "qa_structure_changed"
    assert parse_translation(format_qa_pairs(source), source, "de", 0.5).drop == "untranslated"
    assert parse_translation("Wie lang ist der Rhein?", source, "de", 0.5).drop == "no_qa_pairs"


def test_target_languages():
    langs = ["de", "fr", "es"]
    assert target_languages(langs, None, 0, "r") == langs
    picks = [target_languages(langs, 1, 0, f"r{i}")[0] for i in range(300)]
    assert {picks.count(lang) for lang in langs} <= set(range(70, 130))


# ----------------------------------------------------------------------------------------------- prompts, rows


def test_every_task_prompt_loads_and_fills():
    for prompts in TASK_PROMPTS.values():
        for name in prompts:
            prompt = load_prompt(name)
            assert prompt.tag == f"{name}-v{prompt.version}"
    msgs = load_prompt("diverse_qa").messages(False, document="Braces {x} and $dollars stay.")
    assert msgs[0]["content"].endswith("/no_think") and "Braces {x} and $dollars stay." in msgs[1]["content"]
    assert load_prompt("reasoning_math").messages(True, problem="1+1?")[0]["content"] == "/think"
    with pytest.raises(Exception, match=r"\$document"):
        load_prompt("distill").messages(False, text="x")


def test_training_text_follows_the_data_contract():
    prompt = load_prompt("reasoning_math").messages(True, problem="What is 2+2?")
    on = chat_row(
        row_id="r1", messages=[*prompt, {"role": "assistant", "content": "<think>\n2+2=4\n</think>\n\\boxed{4}"}],
        reasoning=True, task="reasoning_sft", source_id="p1", prompt_version="reasoning_math-v1", model="m",
        sampling={"temperature": 0.6}, metadata={},
    )  # fmt: skip
    rendered = render_chat(prompt, add_generation_prompt=True)
    assert rendered.endswith("<think>\n")
    assert on["text"] == rendered + "2+2=4\n</think>\n\\boxed{4}\n<SPECIAL_12>\n"
    off_prompt = load_prompt("reasoning_math").messages(False, problem="What is 2+2?")
    off = training_text([*off_prompt, {"role": "assistant", "content": "\\boxed{4}"}])
    assert off == render_chat(off_prompt, add_generation_prompt=True) + "\\boxed{4}\n<SPECIAL_12>\n"
    assert off.count("<think></think>") == 1
    with pytest.raises(Nano2Error, match="assistant"):
        chat_row(row_id="x", messages=prompt, reasoning=True, task="t", source_id="s", prompt_version="v",
                 model="m", sampling=None, metadata={})  # fmt: skip


def test_reasoning_switch_for_requests():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert with_reasoning_switch(msgs, None) == msgs
    assert with_reasoning_switch(msgs, True) == msgs  # on is the default: nothing to add
    off = with_reasoning_switch(msgs, False)
    assert off[1]["content"].endswith("/no_think") and msgs[1]["content"] == "Hi"  # input untouched
    assert render_chat(off).endswith("<think></think>")
    back_on = with_reasoning_switch(off, True)
    assert render_chat(back_on).endswith("<think>\n")
