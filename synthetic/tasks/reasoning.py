"""Verified reasoning SFT: problems -> `<think>trace</think>` + answer, kept only when the answer is right.

The request is a reasoning-on chat (the template opens `<think>`), so the completion is `trace </think> answer`
(a leading `<think>` is tolerated). Answers are judged by `verify/`, the judge of the GRPO rewards and the eval
scores, so a row is kept exactly when the eval would score its answer correct: math by `verify.math` (on top of
that a training answer must *state* its final answer, boxed or on a `#### N` line, as the prompt asks), code by
running the last fenced block with the problem's tests in `verify.sandbox` (a failure, an error, a timeout or a
blocked action drops it). Anything unverified is dropped with its reason.

Empty traces (Nano 2 SFT stage 1: ~10% of prompts, which teaches reasoning-off): a hashed `empty_trace_share` of
the verified rows keep only the answer, as reasoning-off rows with `/no_think` in the system message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nano2.contracts.chat import THINK_CLOSE, THINK_OPEN
from synthetic.tasks.common import Parsed, chosen, drop, keep
from verify.code import fenced_code, run_tests
from verify.gsm8k import FINAL_LINE
from verify.math import score_math
from verify.sandbox import SandboxLimits

_CALCULATOR = re.compile(r"<<[^<>]*>>")


def split_reasoning(text: str) -> Parsed:
    """A completion -> (trace, answer), or why it is not one."""
    body = (text or "").strip()
    if body.startswith(THINK_OPEN):
        body = body[len(THINK_OPEN) :]
    if not body.strip():
        return drop("empty_output")
    closes = body.count(THINK_CLOSE)
    if closes == 0:
        return drop("unclosed_think")
    if closes > 1 or THINK_OPEN in body:
        return drop("nested_think")
    trace, answer = (part.strip() for part in body.split(THINK_CLOSE))
    if not trace:
        return drop("empty_trace")
    if not answer:
        return drop("empty_answer")
    return keep((trace, answer))


def reasoning_target(trace: str, answer: str) -> str:
    """The assistant content of a reasoning-on row (the data contract)."""
    return f"{THINK_OPEN}\n{trace.strip()}\n{THINK_CLOSE}\n{answer.strip()}"


def parse_target(content: str) -> tuple[str, str] | None:
    """(trace, answer) of a reasoning-on row's assistant content, None for a reasoning-off one."""
    parsed = split_reasoning(content)
    return parsed.value if parsed.ok else None


def gsm8k_trace(solution: str) -> tuple[str, str] | None:
    """A GSM8K gold solution as (trace, answer): the worked lines without calculator marks, and the `#### N` line."""
    lines = (solution or "").strip().splitlines()
    if not lines or not FINAL_LINE.match(lines[-1]):
        return None
    trace = "\n".join(_CALCULATOR.sub("", line).rstrip() for line in lines[:-1]).strip()
    return (trace, lines[-1].strip()) if trace else None


def verify_math(answer: str, gold: str) -> Parsed:
    """Keep an answer that states its final answer (boxed or `#### N`) and that `verify.math` judges equal to gold."""
    score = score_math(gold, answer)
    if not score.stated:
        return drop("no_final_answer", rule=score.rule)
    if not score.correct:
        return drop("wrong_answer", answer=(score.predicted or "")[:200], reference=gold)
    return keep(score.predicted, reference=gold)


def verify_code(answer: str, tests: Sequence[str], setup: str = "", timeout_s: float = 10.0) -> Parsed:
    """Keep an answer whose last fenced code block passes the tests in the sandbox (`setup` runs after the code)."""
    code = fenced_code(answer)
    if code is None:
        return drop("no_code_block")
    if not tests:
        return drop("no_tests")
    checks = "\n".join(part.strip() for part in (setup, *tests) if part.strip()) + "\n"
    limits = SandboxLimits(wall_s=timeout_s, cpu_s=max(1, int(timeout_s) + 1), memory_mb=1024)
    result = run_tests(code.strip("\n") + "\n", checks, limits=limits)
    if result.verdict == "timeout":
        return drop("tests_timeout", timeout_s=timeout_s)
    if not result.passed:
        return drop("tests_failed", verdict=result.verdict, error=result.reason[:200])
    return keep(code.strip(), tests=len(tests))


def gets_empty_trace(share: float, seed: int, source_id: str, sample_index: int) -> bool:
    """Whether this verified sample becomes a reasoning-off row (hashed, so reruns agree)."""
    return chosen(share, seed, source_id, sample_index, "empty-trace")
