"""Unit tests of the scorers: math extraction/equivalence, multiple choice, code extraction and pass@k."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest

from evals.benchmarks import EvalItem
from evals.choice import extract_choice, score_choice
from evals.code_scoring import build_program, extract_code, mean_pass_at_k, pass_at_k, truncate_at_stop
from evals.math_scoring import (
    answers_match,
    extract_answer,
    gold_number,
    last_boxed,
    number_readings,
    score_math,
    to_ascii_digits,
)
from nano2.errors import Nano2Error

# ---------------------------------------------------------------------------------------------------------------------
# Math extraction
# ---------------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------------
# Multiple choice
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("B", ("B", "leading")),
        ("  B. blue whale", ("B", "leading")),
        ("(C)", ("C", "leading")),
        ("**D**", ("D", "leading")),
        ("B\n\nExplanation: ...", ("B", "leading")),
        ("Answer: C", ("C", "answer_phrase")),
        ("The answer is (B).", ("B", "answer_phrase")),
        ("I think the correct option is D because", ("D", "answer_phrase")),
        ("The answer is $\\text{A}$", ("A", "answer_phrase")),
        ("Answer: A first, then on reflection Answer: B", ("B", "answer_phrase")),
        ("so \\boxed{C}", ("C", "boxed")),
        ("Answer: \\boxed{\\text{(B)}}", ("B", "boxed")),
        ("Between (A) and (C), (C) fits", ("C", "parenthesised")),
    ],
)
def test_extract_choice(text, expected):
    assert extract_choice(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A frameshift mutation is when a base pair is inserted.",  # an article, not an option
        "None of the options is right",
        "Answer: E",  # not one of four options
        "answer: based on the data",
    ],
)
def test_extract_choice_gives_none_when_no_option_is_named(text):
    assert extract_choice(text)[0] is None
    assert not score_choice("A", text).correct


def test_score_choice_checks_gold_and_more_options():
    assert score_choice("b", "Answer: B").correct
    assert extract_choice("Answer: E", n_choices=5) == ("E", "answer_phrase")
    with pytest.raises(ValueError, match="not among"):
        score_choice("E", "Answer: E")


# ---------------------------------------------------------------------------------------------------------------------
# pass@k
# ---------------------------------------------------------------------------------------------------------------------


def _brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """The fraction of k-subsets of n samples (c correct) that contain at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_subset_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert pass_at_k(1000, 0, 100) == 0.0
    assert pass_at_k(1000, 950, 100) == 1.0
    assert 0.0 < pass_at_k(2000, 3, 50) < 1.0


def test_pass_at_k_rejects_impossible_counts():
    for n, c, k in [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_mean_pass_at_k_averages_problems():
    rng = random.Random(0)
    outcomes = {f"p{i}": [rng.random() < 0.3 for _ in range(6)] for i in range(20)}
    summary = mean_pass_at_k(outcomes, ks=(1, 5))
    assert summary[1] == pytest.approx(sum(sum(v) / 6 for v in outcomes.values()) / 20)
    expected_5 = sum(_brute_force_pass_at_k(6, sum(v), 5) for v in outcomes.values()) / 20
    assert summary[5] == pytest.approx(expected_5)
    with pytest.raises(Nano2Error, match="at least 10 samples"):
        mean_pass_at_k(outcomes, ks=(10,))


# ---------------------------------------------------------------------------------------------------------------------
# Code extraction and programs
# ---------------------------------------------------------------------------------------------------------------------


def test_extract_code_prefers_the_block_defining_the_entry_point():
    reply = "Here:\n```python\nimport math\n```\nand\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert extract_code(reply, "add") == ("def add(a, b):\n    return a + b", True)
    assert extract_code(reply) == ("def add(a, b):\n    return a + b", True)
    assert extract_code("    return a + b\n") == ("    return a + b\n", False)
    assert extract_code("```py\nx = 1") == ("x = 1", True)  # an unclosed block runs to the end
    assert extract_code("```bash\nls\n```") == ("```bash\nls\n```", False)


def test_truncate_at_stop_cuts_at_the_earliest_stop():
    assert truncate_at_stop("a\nb\ndef c():\n#x", ("\n#", "\ndef ")) == "a\nb"
    assert truncate_at_stop("no stop", ("[DONE]",)) == "no stop"


def _code_item(benchmark: str, **fields) -> EvalItem:
    return EvalItem(id="x/1", benchmark=benchmark, kind="code", prompt=fields.pop("prompt", ""), messages=(), **fields)


def test_build_program_humaneval_continuation_and_full_function():
    item = _code_item(
        "humaneval",
        prompt='def add(a, b):\n    """Add."""\n',
        tests="def check(candidate):\n    assert candidate(1, 2) == 3\n\ncheck(add)\n",
        entry_point="add",
    )
    continuation = build_program(item, "    return a + b\n")
    assert continuation.startswith('def add(a, b):\n    """Add."""\n    return a + b\n')
    assert continuation.endswith("check(add)\n")
    chat = build_program(item, "Sure!\n```python\ndef add(a, b):\n    return b + a\n```")
    assert chat.index("    pass") < chat.index("return b + a") < chat.index("check(add)")
    compile(chat, "chat", "exec")
    compile(continuation, "continuation", "exec")


def test_build_program_mbpp_orders_imports_solution_setup_tests():
    item = _code_item("mbpp", preamble="import math", tests="assert f(4) == 2.0\n", stop=("[DONE]",))
    program = build_program(item, "def f(x):\n    return math.sqrt(x)\n[DONE]\nextra text")
    assert program == "import math\n\ndef f(x):\n    return math.sqrt(x)\n\n\nassert f(4) == 2.0\n"
    with pytest.raises(Nano2Error, match="not a code item"):
        build_program(EvalItem(id="m", benchmark="gsm8k", kind="math", prompt="", messages=()), "x")
