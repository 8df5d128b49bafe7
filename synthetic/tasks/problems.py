"""Verifiable problems, shared by the reasoning, preference and truncate stages: whether a problem can be asked,
the reference an answer is verified against, the request for one sample, and the verdict on an answer.

Math problems carry a reference answer (`answer_key`; a GSM8K solution ending in `#### N`, or the plain answer);
code problems carry tests (`tests_key`) and optional setup code. A GSM8K solution is also real reasoning text:
`reference_solution` turns it into a (trace, `\\boxed{gold}`) pair that truncate cuts and preference can choose.
"""

from __future__ import annotations

from typing import Any

from synthetic.config import GenerationSettings, ProblemInput
from synthetic.inputs import SourceDoc
from synthetic.prompting import load_prompt
from synthetic.stage import Job, job_sampling
from synthetic.tasks.common import Parsed
from synthetic.tasks.reasoning import gsm8k_trace, verify_code, verify_math
from verify.gsm8k import gsm8k_gold

REASONING_TASK = "reasoning_sft"


def problem_tests(value: Any) -> list[str]:
    """The test statements of a code problem (a list, or one statement per line)."""
    if isinstance(value, str):
        return [line for line in value.splitlines() if line.strip()]
    return [str(t) for t in (value or []) if str(t).strip()]


def reference_answer(problem: SourceDoc, spec: ProblemInput) -> str | None:
    raw = problem.metadata.get(spec.answer_key or "")
    if raw is None:
        return None
    return gsm8k_gold(str(raw)) if spec.answer_format == "gsm8k" else str(raw).strip() or None


def reference_solution(problem: SourceDoc, spec: ProblemInput) -> tuple[str, str] | None:
    """A GSM8K-style reference solution as (trace, `\\boxed{gold}`): real reasoning text with its checked answer."""
    solution = str(problem.metadata.get(spec.answer_key or "") or "")
    trace = gsm8k_trace(solution)
    gold = gsm8k_gold(solution)
    return None if trace is None or gold is None else (trace[0], f"\\boxed{{{gold}}}")


def problem_drop(problem: SourceDoc, spec: ProblemInput) -> str | None:
    """Why a problem cannot be asked (nothing to verify an answer against), or None."""
    if not problem.text.strip():
        return "empty_problem"
    if spec.kind == "math" and reference_answer(problem, spec) is None:
        return "no_reference_answer"
    if spec.kind == "code" and not problem_tests(problem.metadata.get(spec.tests_key or "")):
        return "no_tests"
    return None


def verify_answer(payload: dict[str, Any], answer: str, code_timeout_s: float) -> Parsed:
    """The verdict on the answer part of a completion, by the problem's kind (payload of `problem_job`)."""
    if payload["kind"] == "math":
        return verify_math(answer, payload["reference"])
    return verify_code(answer, payload["tests"], payload["setup"], code_timeout_s)


def problem_job(
    problem: SourceDoc,
    spec: ProblemInput,
    seed: int,
    settings: GenerationSettings,
    sample: int,
    task: str = REASONING_TASK,
) -> Job:
    """The reasoning-on request for one sample of a problem, with what verifying its answer needs."""
    if spec.kind == "math":
        prompt = load_prompt("reasoning_math")
        fields = {"problem": problem.text.strip()}
        payload: dict[str, Any] = {"reference": reference_answer(problem, spec)}
    else:
        prompt = load_prompt("reasoning_code")
        tests = problem_tests(problem.metadata.get(spec.tests_key or ""))
        fields = {"problem": problem.text.strip(), "tests": "\n".join(tests)}
        setup = str(problem.metadata.get(spec.setup_key or "") or "") if spec.setup_key else ""
        payload = {"tests": tests, "setup": setup}
    return Job(
        task=task,
        source_id=problem.id,
        sample_index=sample,
        prompt=prompt,
        messages=prompt.messages(True, **fields),
        sampling=job_sampling(settings, seed, sample),
        thinking=True,
        payload={**payload, "kind": spec.kind, "fields": fields, "problem": problem},
    )
