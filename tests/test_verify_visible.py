"""verify.visible: the text every verdict is given on, the completion without its reasoning trace."""

from __future__ import annotations

import pytest

from nano2.contracts.chat import THINK_CLOSE, THINK_OPEN
from verify.visible import visible_answer


@pytest.mark.parametrize(
    "completion, trace_open, expected",
    [
        (f"work 2+2\n{THINK_CLOSE}\n\\boxed{{4}}", True, "\\boxed{4}"),
        ("still thinking about \\boxed{4}", True, ""),  # the trace never closed: no answer
        (f"{THINK_OPEN}re-opened\n{THINK_CLOSE} 4", True, "4"),
        (f"a{THINK_CLOSE}b{THINK_CLOSE}c", True, "c"),  # text between two closes is not an answer either
        ("The answer is 4.", False, "The answer is 4."),
        (f"{THINK_OPEN}unasked trace{THINK_CLOSE}\nThe answer is 4.", False, "The answer is 4."),
        (f"The answer is 4. {THINK_OPEN}an afterthought", False, "The answer is 4."),
        ("", True, ""),
    ],
)
def test_visible_answer(completion, trace_open, expected):
    assert visible_answer(completion, trace_open=trace_open) == expected
