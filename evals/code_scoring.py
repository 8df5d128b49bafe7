"""Code benchmarks: turn a model completion into a test program, run it in the sandbox, and estimate pass@k.

A completion is either a continuation of the prompt (base models: HumanEval's function body, MBPP's code after
"[BEGIN]") or a chat reply with a ```python block. The program is `item.preamble`, the solution, then `item.tests`;
for HumanEval the prompt (imports, helpers, signature) always comes first, so a reply that restates the whole
function simply redefines it.

pass@k is the unbiased estimator of Chen et al. (2021): with n samples of which c pass,
pass@k = 1 - C(n-c, k) / C(n, k), computed as a product so that large n does not overflow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from evals.benchmarks import EvalItem
from evals.sandbox import SandboxLimits, SandboxResult, run_programs
from nano2.errors import Nano2Error

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:\n[ \t]*```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"", "python", "py", "python3", "py3"}


def fenced_blocks(text: str) -> list[str]:
    """Contents of the ``` blocks tagged python (or untagged), in order; an unclosed last block runs to the end."""
    return [body for tag, body in _FENCE.findall(text) if tag.lower() in _PYTHON_TAGS]


def extract_code(completion: str, entry_point: str | None = None) -> tuple[str, bool]:
    """The code in a completion and whether it came from a ``` block.

    With several blocks, the last one that defines `entry_point` wins, else the first one with a `def`, else the
    first. Without blocks the completion is code as it stands (a continuation).
    """
    blocks = fenced_blocks(completion)
    if not blocks:
        return completion, False
    if entry_point:
        defining = [b for b in blocks if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", b, re.MULTILINE)]
        if defining:
            return defining[-1], True
    with_def = [b for b in blocks if re.search(r"^\s*def\s", b, re.MULTILINE)]
    return (with_def or blocks)[0], True


def truncate_at_stop(text: str, stops: Sequence[str]) -> str:
    """Cut a completion at the first stop string (for backends that return text past a stop)."""
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if index >= 0:
            cut = min(cut, index)
    return text[:cut]


def _defines_top_level(code: str, name: str | None) -> bool:
    return bool(name) and re.search(rf"^def\s+{re.escape(name or '')}\s*\(", code, re.MULTILINE) is not None


def build_program(item: EvalItem, completion: str) -> str:
    """The full test program for one completion of a code item (HumanEval or MBPP)."""
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
    parts = [item.preamble.strip(), solution, item.tests]
    return "\n\n".join(part for part in parts if part)


def reference_program(item: EvalItem) -> str:
    """The program for the benchmark's own canonical solution (it must pass: the oracle check)."""
    if item.reference is None:
        raise Nano2Error(f"{item.id}: no reference solution")
    return build_program(item, item.reference)


def run_completions(
    pairs: Sequence[tuple[EvalItem, str]],
    limits: SandboxLimits | None = None,
    workers: int = 2,
    on_result: Callable[[int, SandboxResult], None] | None = None,
) -> list[SandboxResult]:
    """Run (item, completion) pairs in the sandbox with a small pool; results in input order."""
    return run_programs([build_program(item, completion) for item, completion in pairs], limits, workers, on_result)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c of them correct (Chen et al. 2021, stable product form)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(outcomes: Mapping[str, Sequence[bool]], ks: Sequence[int] = (1,)) -> dict[int, float]:
    """Mean pass@k over problems from each problem's per-sample pass/fail list; every problem needs >= k samples."""
    if not outcomes:
        raise Nano2Error("no problems to score")
    summary = {}
    for k in ks:
        short = [key for key, samples in outcomes.items() if len(samples) < k]
        if short:
            raise Nano2Error(f"pass@{k} needs at least {k} samples per problem; {len(short)} have fewer: {short[:3]}")
        values = [pass_at_k(len(samples), sum(bool(s) for s in samples), k) for samples in outcomes.values()]
        summary[k] = sum(values) / len(values)
    return summary
