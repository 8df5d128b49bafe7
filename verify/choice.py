"""Multiple-choice answers: which letter (A-D, or up to J) a response chose, for MMLU-style items.

It lives with the other answer judges because it reads boxes the way `verify.math` does (a `\\boxed{B}` is the
same final answer to both).

Precedence, strongest evidence first: the last `\\boxed{X}`; the last "Answer: X" / "the answer is (X)" /
"correct option is X"; a response that *is* a letter ("B", " B. blue", "(B)", "**B**"); the last parenthesised
"(X)" alone. A bare capital letter inside prose ("A frameshift mutation is ...") is never taken as an answer, so a
response that names no option scores wrong instead of being read as "A".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from verify.math import boxed_contents


@dataclass(frozen=True)
class ChoiceScore:
    correct: bool
    predicted: str | None
    rule: str


def _letters(n_choices: int) -> str:
    if not 2 <= n_choices <= 10:
        raise ValueError(f"n_choices must be between 2 and 10, got {n_choices}")
    return "ABCDEFGHIJ"[:n_choices]


def extract_choice(text: str, n_choices: int = 4) -> tuple[str | None, str]:
    """The chosen letter and the rule that found it (boxed, answer_phrase, leading, parenthesised, none)."""
    if not text:
        return None, "none"
    letters = _letters(n_choices)
    cls = f"[{letters}]"
    for content in reversed(boxed_contents(text)):
        inner = re.sub(r"\\(?:text|textbf|mathrm)\{([^{}]*)\}", r"\1", content).strip().strip("()").strip()
        match = re.fullmatch(rf"({cls})(?:[.):]\s*.*)?", inner, re.DOTALL)
        if match:
            return match.group(1), "boxed"
    phrase = re.compile(
        r"(?:answer|option|choice)\s*(?:is|:|=|would\s+be|should\s+be)?\s*(?:option|choice)?\s*[:：]?\s*"
        rf"(?:\*\*|\$|\\text\{{|\\textbf\{{)*\s*[(\[]?\s*({cls})\s*[)\]]?(?![A-Za-z0-9])",
        re.IGNORECASE,
    )
    answers = [m for m in phrase.finditer(text) if m.group(1).isupper()]
    if answers:
        return answers[-1].group(1), "answer_phrase"
    leading = re.match(rf"\s*(?:\*\*)?\s*[(\[]?\s*({cls})\s*(?:[)\].:]|\*\*|$|\s)", text)
    if leading and (len(text.strip()) <= 3 or re.match(rf"\s*(?:\*\*)?\s*[(\[]?{cls}[)\].:]", text) or _is_label(text)):
        return leading.group(1), "leading"
    parenthesised = re.findall(rf"\(({cls})\)", text)
    if parenthesised:
        return parenthesised[-1], "parenthesised"
    return None, "none"


def _is_label(text: str) -> bool:
    """`B` followed by a line break or the end: the whole first line is the letter."""
    first_line = text.strip().split("\n", 1)[0].strip().strip("*").strip()
    return len(first_line) == 1


def score_choice(gold: str, response: str, n_choices: int = 4) -> ChoiceScore:
    """Compare the extracted letter with the gold letter."""
    gold = gold.strip().upper()
    if gold not in _letters(n_choices):
        raise ValueError(f"gold letter {gold!r} is not among the {n_choices} options")
    predicted, rule = extract_choice(response, n_choices)
    return ChoiceScore(correct=predicted == gold, predicted=predicted, rule=rule)
