"""Code benchmarks' programs: a HumanEval/MBPP item plus a model completion as one test program for the sandbox.

What is benchmark-specific stays here (HumanEval's prompt stub, MBPP's `[DONE]` stop and imports); reading the code
out of the reply, assembling the program and running it are `verify.code`'s, as for the reasoning SFT filter.

A completion is either a continuation of the prompt (base models: HumanEval's function body, MBPP's code after
"[BEGIN]") or a chat reply with a ```python block. The program is `item.preamble`, the solution, then `item.tests`;
for HumanEval the prompt (imports, helpers, signature) always comes first, so a reply that restates the whole
function simply redefines it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from evals.benchmarks import EvalItem
from nano2.errors import Nano2Error
from verify.code import extract_code, judged_program, program_with_tests, truncate_at_stop
from verify.sandbox import Program, SandboxLimits, SandboxResult, run_programs


def _defines_top_level(code: str, name: str | None) -> bool:
    return bool(name) and re.search(rf"^def\s+{re.escape(name or '')}\s*\(", code, re.MULTILINE) is not None


def build_program(item: EvalItem, completion: str) -> str:
    """The full test program for one completion of a code item (HumanEval or MBPP), as one text to read."""
    parts = build_judged_program(item, completion)
    return program_with_tests(parts.solution, parts.tests, parts.preamble)


def build_judged_program(item: EvalItem, completion: str) -> Program:
    """The same program as the sandbox runs it: the solution apart from the (trusted) tests."""
    if item.kind != "code" or item.tests is None:
        raise Nano2Error(f"{item.id}: not a code item")
    if item.benchmark == "humaneval":
        code, fenced = extract_code(completion, item.entry_point)
        if fenced or _defines_top_level(code, item.entry_point):
            solution = f"{item.prompt.rstrip()}\n    pass\n\n{code.strip(chr(10))}\n"
        else:  # a continuation of the prompt: the function body
            solution = item.prompt + code
    else:
        code, _ = extract_code(truncate_at_stop(completion, ("[DONE]",)))
        solution = code.strip("\n") + "\n"
    return judged_program(solution, item.tests, item.preamble)


def reference_program(item: EvalItem) -> Program:
    """The program for the benchmark's own canonical solution (it must pass: the oracle check)."""
    if item.reference is None:
        raise Nano2Error(f"{item.id}: no reference solution")
    return build_judged_program(item, item.reference)


def run_completions(
    pairs: Sequence[tuple[EvalItem, str]],
    limits: SandboxLimits | None = None,
    workers: int = 2,
    on_result: Callable[[int, SandboxResult], None] | None = None,
) -> list[SandboxResult]:
    """Run (item, completion) pairs in the sandbox with a small pool; results in input order."""
    programs = [build_judged_program(item, completion) for item, completion in pairs]
    return run_programs(programs, limits, workers, on_result)
