"""verify.math and verify.gsm8k: final-answer extraction, number readings, equivalence, stated answers, GSM8K gold."""

from __future__ import annotations

from fractions import Fraction

import pytest

from nano2.errors import Nano2Error
from verify.gsm8k import gsm8k_gold, require_gsm8k_gold
from verify.math import (
    answers_match,
    extract_answer,
    gold_number,
    last_boxed,
    number_readings,
    score_math,
    stated_answer,
    to_ascii_digits,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{\\frac{1}{2}}.", ("\\frac{1}{2}", "boxed")),
        ("first \\boxed{3}, finally \\boxed{\\sqrt{\\frac{1}{2}}}", ("\\sqrt{\\frac{1}{2}}", "boxed")),
        ("\\boxed{\\left\\{ 1, 2 \\right\\}}", ("\\left\\{ 1, 2 \\right\\}", "boxed")),
        ("$\\framebox[2cm]{204}$ minutes", ("204", "boxed")),
        ("\\fbox{7}", ("7", "boxed")),
        ("\\boxed 5 is it", ("5", "boxed")),
        ("Janet sells 9 eggs.\n#### 1,600", ("1,600", "hashes")),
        ("The answer is $\\frac{3}{4}$.", ("\\frac{3}{4}", "phrase")),
        ("The answer is $\\$18.90$.", ("\\$18.90", "phrase")),
        ("Final Answer: The final answer is $5$. I hope it is correct.", ("5", "phrase")),
        ("The final answer is: 42 apples", ("42", "phrase")),
        ("The answer is -3.", ("-3", "phrase")),
        ("So it is 3 + 4 = 7", ("7", "last_number")),
        ("The answer is not obvious. We compute 3 + 4 = 7.", ("7", "last_number")),  # no answer after the phrase
        ("The answer is Evelyn.", ("Evelyn", "phrase")),
        ("The answer is \\frac{1}{2}.", ("\\frac{1}{2}", "phrase")),  # LaTeX without $: not its first digit
        ("The answer is 18 dollars, since 3 * 6 = 18", ("18", "phrase")),
        ("as reported for COVID-19", ("19", "last_number")),  # a hyphen inside a word is not a minus sign
        ("a total of −12 degrees", ("-12", "last_number")),
        ("He has 3/4 left", ("3/4", "last_number")),
        ("উত্তর হল ১২৫", ("125", "last_number")),
        ("答案是 １２", ("12", "last_number")),
    ],
)
def test_extract_answer_precedence(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "malformed",
    ["", "no numbers here at all", "\\boxed{12", "we get \\boxed{3} and then \\boxed{\\frac{1}{", "ends with \\boxed"],
)
def test_extract_answer_malformed_outputs_give_no_answer(malformed):
    answer, rule = extract_answer(malformed)
    assert answer is None
    assert rule in ("none", "truncated_boxed")
    assert not score_math("12", malformed).correct


def test_last_boxed_ignores_escaped_braces_and_keeps_nesting():
    assert last_boxed("\\boxed{\\{1, 2\\}}") == "\\{1, 2\\}"
    assert last_boxed("\\boxed{a_{b_{c}}}") == "a_{b_{c}}"
    assert last_boxed("nothing boxed") is None


def test_to_ascii_digits_maps_every_script_but_not_superscripts():
    assert to_ascii_digits("১২৫ ๑๒ ౧౨ １２，５") == "125 12 12 12,5"
    assert to_ascii_digits("x²") == "x²"  # NFKC would turn this into x2


@pytest.mark.parametrize(
    "text, values",
    [
        ("1,600", {1600, Fraction(8, 5)}),  # English thousands, or a decimal comma
        ("1.000", {1000, 1}),
        ("1,234.5", {Fraction(2469, 2)}),
        ("1.234,5", {Fraction(2469, 2)}),
        ("12,345,678", {12345678}),
        ("2\u202f125", {2125}),
        ("0,5", {Fraction(1, 2)}),
        ("\\$1{,}000", {1000, 1}),
        ("50\\%", {50}),
        ("90^\\circ", {90}),
        ("18 \\text{ dollars}", {18}),
        ("-3/4", {Fraction(-3, 4)}),
        ("\\textbf{(073)}", {73}),
        ("\\frac{1}{2}", None),
        ("x+1", None),
    ],
)
def test_number_readings(text, values):
    assert number_readings(text) == values


def test_gold_number_uses_the_english_convention():
    assert gold_number("2,125") == 2125
    assert gold_number("-10") == -10
    assert gold_number(".0000672") == Fraction(672, 10**7)
    assert gold_number("-2,1") is None  # a list of two answers, not a number
    assert gold_number("\\frac{1}{2}") is None


@pytest.mark.parametrize(
    "gold, predicted, expected",
    [
        ("18", "18.0", True),
        ("18", "18.5", False),
        ("1000", "1.000", True),  # German thousands
        ("2125", "2.125", True),
        ("0.5", "\\frac12", True),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
        ("\\text{(C)}", "C", True),
        ("\\text{Evelyn}", "Evelyn", True),
        ("x^2+1", "1+x^2", True),
        ("-2,1", "-2.1", False),
        ("-2,1", "1,-2", True),
        ("[1,2)", "(1,2)", False),
        ("52_8", "52_{8}", True),
        ("52_8", "52_9", False),
        (".0000672", ".0000673", False),
        ("\\frac{1}{3} E_{1}+\\frac{2}{3} E_{2}", "\\frac{1}{3} E_{1}+\\frac{2}{3} E_{3}", False),
        ("5", None, False),
        ("5", "   ", False),
    ],
)
def test_answers_match(gold, predicted, expected):
    assert answers_match(gold, predicted) is expected


def test_score_math_reports_what_it_extracted():
    score = score_math("72", "Natalia sold 48 + 24 = 72 clips.\n#### 72")
    assert (score.correct, score.predicted, score.rule) == (True, "72", "hashes")
    wrong = score_math("72", "The answer is 70.")
    assert (wrong.correct, wrong.predicted) == (False, "70")


@pytest.mark.parametrize(
    "text, stated, rule",
    [
        ("so \\boxed{42}.", "42", "boxed"),
        ("work\n#### 1,234", "1,234", "hashes"),
        ("The answer is 42.", None, "phrase"),
        ("It is 72.", None, "last_number"),
        ("ends inside \\boxed{4", None, "truncated_boxed"),
        ("", None, "none"),
    ],
)
def test_stated_answer_is_a_box_or_a_hash_line_only(text, stated, rule):
    assert stated_answer(text) == stated
    score = score_math("42", text)
    assert score.rule == rule and score.stated is (stated is not None)


def test_gsm8k_gold_reads_the_last_hash_line_without_separators():
    assert gsm8k_gold("She has 1,200 + 5 = <<1200+5=1205>>1,205.\n#### 1,205") == "1205"
    assert gsm8k_gold("a #### inside a line is not the answer\n#### 7") == "7"
    assert gsm8k_gold("no final line") is None
    with pytest.raises(Nano2Error, match="no '#### N' line"):
        require_gsm8k_gold("no final line")
