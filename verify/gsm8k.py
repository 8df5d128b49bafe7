"""GSM8K gold answers: the number on a solution's last `#### N` line, thousands separators removed.

One parser for the three readers of GSM8K solutions (the reasoning SFT references in synthetic/, the GRPO prompts in
train/, the GSM8K eval in evals/), so the gold a training answer is checked against is the gold it is scored against.
"""

from __future__ import annotations

import re

from nano2.errors import Nano2Error

FINAL_LINE = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)
"""A solution's final-answer line (`#### 1,205`); group 1 is the answer as written."""


def gsm8k_gold(solution: str) -> str | None:
    """The gold answer of a GSM8K solution (its last `#### N` line, commas removed), or None when it has none."""
    marks = FINAL_LINE.findall(solution or "")
    return marks[-1].replace(",", "").strip() if marks else None


def require_gsm8k_gold(solution: str) -> str:
    """`gsm8k_gold` for readers of the data files, where a solution without its `#### N` line is a broken row."""
    gold = gsm8k_gold(solution)
    if gold is None:
        raise Nano2Error(f"not a GSM8K solution (no '#### N' line): {(solution or '')[-80:]!r}")
    return gold
