"""Code answers: which code a reply answers with, the test program that judges it, and its run in the sandbox.

One reading of a reply for the code eval (evals/, HumanEval and MBPP) and the reasoning SFT filter (synthetic/): a
reply's ```python (or untagged) blocks, of which the last one that defines the function under test is the answer
(else the last one with a `def`, else the last one: a reply's final code is its answer, as its final box is); no
block means the completion is code as it stands (a base model's continuation). The test program is the preamble
(imports), the solution, then the tests (setup code that uses the solution, then the asserts), and it runs only in
`verify.sandbox`, which keeps the parts apart (`judged_program`): the tests run after the solution in their own
namespace, where only built-in values may be compared, so an always-equal object or a patched helper cannot pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from verify.sandbox import Program, SandboxLimits, SandboxResult, run_program

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


def fenced_blocks(text: str) -> list[str]:
    """Contents of the ``` blocks tagged python (or untagged), in order; an unclosed last block runs to the end."""
    return [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS]


def fenced_code(text: str, entry_point: str | None = None) -> str | None:
    """The code of the block a reply answers with (see the module docstring), or None when it has no python block."""
    blocks = fenced_blocks(text)
    if not blocks:
        return None
    if entry_point:
        defining = [b for b in blocks if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", b, re.MULTILINE)]
        if defining:
            return defining[-1]
    with_def = [b for b in blocks if re.search(r"^\s*def\s", b, re.MULTILINE)]
    return (with_def or blocks)[-1]


def extract_code(completion: str, entry_point: str | None = None) -> tuple[str, bool]:
    """The code in a completion and whether it came from a ``` block (without one, the completion as it stands)."""
    code = fenced_code(completion, entry_point)
    return (completion, False) if code is None else (code, True)


def truncate_at_stop(text: str, stops: Sequence[str]) -> str:
    """Cut a completion at the first stop string (for backends that return text past a stop)."""
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if index >= 0:
            cut = min(cut, index)
    return text[:cut]


def program_with_tests(solution: str, tests: str, preamble: str = "") -> str:
    """The program that judges a solution: preamble (imports), the solution, then the tests; empty parts left out."""
    return "\n\n".join(part for part in (preamble.strip(), solution, tests) if part)


def judged_program(solution: str, tests: str, preamble: str = "") -> Program:
    """The sandbox's view of the same program: the solution untrusted, the tests trusted and checked strictly."""
    return Program(solution=solution, tests=tests, preamble=preamble.strip())


def run_tests(solution: str, tests: str, preamble: str = "", limits: SandboxLimits | None = None) -> SandboxResult:
    """Run a solution against its tests in the sandbox; `result.passed` is the verdict."""
    return run_program(judged_program(solution, tests, preamble), limits)
