"""Scoring a run's answers: each task's visible answer judged by `verify/` (IFEval by its own checkers).

The eval's side of the one verdict: math, multiple choice and code go through the same judges as the reasoning SFT
filter and the GRPO rewards, so a score here is the score the training data and rewards were held to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evals.tasks import Task
from nano2.errors import Nano2Error
from verify.sandbox import SandboxLimits
from verify.visible import visible_answer


@dataclass(frozen=True)
class Verdict:
    """One scored sample as the store records it."""

    correct: bool
    verdict: str  # correct/wrong (math, choice), the sandbox verdict (code), followed/not_followed (ifeval)
    extracted: str | None
    detail: dict[str, Any] = field(default_factory=dict)


def scored_answer(text: str, prompt_style: str, thinking: bool | None) -> str:
    """The part of an output that is scored: a completion prompt's output as it stands, a chat output's visible
    answer (`verify.visible`). When reasoning was asked for the prompt opened the trace, so a trace that never closed
    (the budget ran out) leaves no answer; otherwise only trace blocks the model opened itself are dropped."""
    if prompt_style == "completion":
        return text
    return visible_answer(text, trace_open=bool(thinking))


def _ifeval_follow(item, answer: str) -> dict[str, list[bool]]:
    from evals.ifeval import score_response

    return {
        "strict": score_response(item, answer, loose=False)["follow_list"],
        "loose": score_response(item, answer, loose=True)["follow_list"],
    }


def score_answers(
    pairs: Sequence[tuple[Task, str]], limits: SandboxLimits | None = None, workers: int = 2
) -> list[Verdict]:
    """Score (task, answer text) pairs; code answers run in the sandbox together, with `workers` in parallel."""
    from evals.code_programs import run_completions
    from verify.choice import score_choice
    from verify.code import extract_code
    from verify.math import score_math

    verdicts: list[Verdict | None] = [None] * len(pairs)
    code_indices = []
    for index, (task, answer) in enumerate(pairs):
        if task.kind == "math":
            score = score_math(task.item.answer, answer)
            verdicts[index] = Verdict(
                score.correct, "correct" if score.correct else "wrong", score.predicted, {"rule": score.rule}
            )
        elif task.kind == "choice":
            score = score_choice(task.item.answer, answer, len(task.item.metadata["choices"]))
            verdicts[index] = Verdict(
                score.correct, "correct" if score.correct else "wrong", score.predicted, {"rule": score.rule}
            )
        elif task.kind == "ifeval":
            follow = _ifeval_follow(task.item, answer)
            ok = all(follow["strict"])
            verdicts[index] = Verdict(ok, "followed" if ok else "not_followed", None, follow)
        elif task.kind == "code":
            code_indices.append(index)
        else:
            raise Nano2Error(f"{task.item_id}: no scorer for kind {task.kind!r}")
    if code_indices:
        results = run_completions([(pairs[i][0].item, pairs[i][1]) for i in code_indices], limits, workers)
        for index, result in zip(code_indices, results, strict=True):
            task, answer = pairs[index]
            code, _ = extract_code(answer, getattr(task.item, "entry_point", None))
            verdicts[index] = Verdict(result.passed, result.verdict, code, {"reason": result.reason[:500]})
    return [v for v in verdicts if v is not None]
