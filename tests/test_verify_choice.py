"""verify.choice: which letter a multiple-choice response chose, and when it chose none."""

from __future__ import annotations

import pytest

from verify.choice import extract_choice, score_choice


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
