"""Gold checks: every math benchmark's own gold answers/solutions must score 100% through our extraction and
equivalence, and wrong answers must score 0. A miss here is a scorer bug to fix, never a row to skip."""

from __future__ import annotations

import re
import unicodedata

import pytest

from evals.benchmarks import (
    MGSM_LANGUAGES,
    load_aime24,
    load_aime25,
    load_amc23,
    load_gsm8k,
    load_hmmt25,
    load_math500,
    load_mgsm,
    load_minerva_math,
)
from verify.math import answers_match, gold_number, normalize_answer_text, number_readings, score_math

pytestmark = pytest.mark.realdata


def _misses(pairs):
    """(gold, response) pairs that do not score correct, with what was extracted."""
    out = []
    for gold, response in pairs:
        score = score_math(gold, response)
        if not score.correct:
            out.append((gold, score.predicted, score.rule))
    return out


@pytest.mark.parametrize("split", ["test", "train"])
def test_gold_gsm8k_solutions_score_their_own_answer(shared_data, split):
    items = load_gsm8k(shared_data, split=split, shots=0)
    assert len(items) == {"test": 1319, "train": 7473}[split]
    assert _misses((item.answer, item.reference) for item in items) == []
    assert {score_math(item.answer, item.reference).rule for item in items} == {"hashes"}


def test_gold_gsm8k_wrong_answers_score_zero(shared_data):
    items = load_gsm8k(shared_data, split="test", shots=0)
    wrong = [str(gold_number(item.answer) + 1) for item in items]
    assert sum(score_math(bad, item.reference).correct for bad, item in zip(wrong, items, strict=True)) == 0


def _boxed_and_phrase(items):
    for item in items:
        yield item.answer, f"Putting it together, the final answer is \\boxed{{{item.answer}}}."
        yield item.answer, f"We simplify step by step.\nThus the answer is ${item.answer}$."


@pytest.mark.parametrize(
    "loader, count",
    [(load_math500, 500), (load_aime24, 30), (load_aime25, 30), (load_amc23, 40), (load_hmmt25, 30)],
    ids=["math500", "aime24", "aime25", "amc23", "hmmt25"],
)
def test_gold_answers_score_when_boxed_or_stated(shared_data, loader, count):
    items = loader(shared_data)
    assert len(items) == count
    assert _misses(_boxed_and_phrase(items)) == []


def test_gold_aime24_reference_solutions_end_in_the_answer(shared_data):
    """The AoPS solutions end with \\boxed{}, \\framebox{} or \\textbf{(073)} answers; all must match the key."""
    items = load_aime24(shared_data)
    assert _misses((item.answer, item.reference) for item in items) == []


def test_gold_minerva_reference_solutions(shared_data):
    items = load_minerva_math(shared_data)
    assert len(items) == 272
    assert _misses((item.answer, item.reference) for item in items) == []


@pytest.mark.parametrize("loader", [load_math500, load_hmmt25], ids=["math500", "hmmt25"])
def test_gold_other_problems_answers_score_zero(shared_data, loader):
    """Each gold scored against the next problem's different gold must fail (no false positives)."""
    golds = [item.answer for item in loader(shared_data)]
    false_matches = []
    for index, gold in enumerate(golds):
        other = golds[(index + 1) % len(golds)]
        if normalize_answer_text(other) == normalize_answer_text(gold):
            continue
        if "=" in other or "=" in gold:  # math_verify equates "x=5" with "5" by design
            continue
        if answers_match(gold, other):
            false_matches.append((gold, other))
    assert false_matches == []


def _perturb_first_digit(answer: str) -> str | None:
    """The same answer with its first digit changed: a different value (52_8 -> 62_8, 1/(s+a) -> 2/(s+a))."""
    match = re.search(r"\d", answer)
    if match is None:
        return None
    index = match.start()
    return answer[:index] + str((int(answer[index]) + 1) % 10) + answer[index + 1 :]


def _perturbed_matches(golds):
    wrong = [(gold, _perturb_first_digit(gold)) for gold in golds]
    return [(gold, bad) for gold, bad in wrong if bad is not None and answers_match(gold, bad)]


@pytest.mark.parametrize("loader", [load_math500, load_hmmt25], ids=["math500", "hmmt25"])
def test_gold_perturbed_answers_score_zero(shared_data, loader):
    assert _perturbed_matches([item.answer for item in loader(shared_data)]) == []


def test_gold_minerva_perturbed_numeric_answers_score_zero(shared_data):
    golds = [item.answer for item in load_minerva_math(shared_data) if number_readings(item.answer) is not None]
    assert len(golds) > 100
    assert _perturbed_matches(golds) == []


@pytest.mark.slow
def test_gold_minerva_perturbed_answers_score_zero(shared_data):
    """Every Minerva answer, symbolic ones included (slow: sympy compares unrelated expressions)."""
    assert _perturbed_matches([item.answer for item in load_minerva_math(shared_data)]) == []


@pytest.mark.parametrize("loader", [load_aime24, load_aime25, load_amc23], ids=["aime24", "aime25", "amc23"])
def test_gold_integer_answers_off_by_one_score_zero(shared_data, loader):
    items = loader(shared_data)
    assert sum(score_math(item.answer, f"\\boxed{{{int(item.answer) + 1}}}").correct for item in items) == 0


# How a native speaker writes 2125 and "the answer is": each language's thousands separator, and the language's
# own digits where the script has them (independent of our extraction code).
_NATIVE_FORMAT = {
    "bn": ("উত্তর হল", ",", 0x09E6),
    "de": ("Die Antwort lautet", ".", None),
    "en": ("The answer is", ",", None),
    "es": ("La respuesta es", ".", None),
    "fr": ("La réponse est", "\u202f", None),
    "ja": ("答えは", ",", 0xFF10),
    "ru": ("Ответ:", "\u00a0", None),
    "sw": ("Jibu ni", ",", None),
    "te": ("సమాధానం", ",", 0x0C66),
    "th": ("คำตอบคือ", ",", 0x0E50),
    "zh": ("答案是", ",", None),
}


def _native_number(value: int, separator: str, zero: int | None) -> str:
    text = f"{value:,}".replace(",", separator)
    if zero is not None:
        text = "".join(chr(zero + int(ch)) if ch.isdigit() else ch for ch in text)
    return text


def test_gold_native_formatting_helper_uses_native_digits():
    assert _native_number(2125, ",", 0x09E6) == "২,১২৫"
    assert all(unicodedata.name(ch).startswith("THAI DIGIT") for ch in _native_number(90, ",", 0x0E50))


@pytest.mark.parametrize("lang", MGSM_LANGUAGES)
def test_gold_mgsm_answers_in_every_language(shared_data, lang):
    items = load_mgsm(shared_data, languages=(lang,))
    assert len(items) == 250
    english_solutions = {
        item.messages[0]["content"].split("\n")[0].strip(): item.reference
        for item in load_gsm8k(shared_data, split="test", shots=0)
    }
    english = load_mgsm(shared_data, languages=("en",))
    phrase, separator, zero = _NATIVE_FORMAT[lang]
    pairs = []
    for item, en_item in zip(items, english, strict=True):
        value = int(gold_number(item.answer))
        question = item.messages[0]["content"].split("\n")[0]
        # 1. the aligned GSM8K test solution (ends in "#### N") carries this language's gold answer
        solution = english_solutions[en_item.messages[0]["content"].split("\n")[0].strip()]
        pairs.append((item.answer, solution))
        # 2. a native answer: the question restated, then the language's phrase and number format
        pairs.append((item.answer, f"{question}\n{phrase} {_native_number(value, separator, zero)}."))
    assert _misses(pairs) == []
    wrong = [
        score_math(item.answer, f"{phrase} {_native_number(int(gold_number(item.answer)) + 1, separator, zero)}.")
        for item in items
    ]
    assert sum(score.correct for score in wrong) == 0
