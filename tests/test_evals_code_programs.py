"""evals.code_programs: HumanEval/MBPP items plus completions as test programs; the benchmarks' own solutions pass."""

from __future__ import annotations

import pytest

from evals.benchmarks import EvalItem, load_humaneval, load_mbpp
from evals.code_programs import build_program, reference_program, run_completions
from nano2.errors import Nano2Error
from verify.sandbox import SandboxLimits, run_programs


def _code_item(benchmark: str, **fields) -> EvalItem:
    return EvalItem(id="x/1", benchmark=benchmark, kind="code", prompt=fields.pop("prompt", ""), messages=(), **fields)


def test_build_program_humaneval_continuation_and_full_function():
    item = _code_item(
        "humaneval",
        prompt='def add(a, b):\n    """Add."""\n',
        tests="def check(candidate):\n    assert candidate(1, 2) == 3\n\ncheck(add)\n",
        entry_point="add",
    )
    continuation = build_program(item, "    return a + b\n")
    assert continuation.startswith('def add(a, b):\n    """Add."""\n    return a + b\n')
    assert continuation.endswith("check(add)\n")
    chat = build_program(item, "Sure!\n```python\ndef add(a, b):\n    return b + a\n```")
    assert chat.index("    pass") < chat.index("return b + a") < chat.index("check(add)")
    compile(chat, "chat", "exec")
    compile(continuation, "continuation", "exec")


def test_build_program_mbpp_orders_imports_solution_setup_tests():
    item = _code_item("mbpp", preamble="import math", tests="assert f(4) == 2.0\n", stop=("[DONE]",))
    program = build_program(item, "def f(x):\n    return math.sqrt(x)\n[DONE]\nextra text")
    assert program == "import math\n\ndef f(x):\n    return math.sqrt(x)\n\n\nassert f(4) == 2.0\n"
    with pytest.raises(Nano2Error, match="not a code item"):
        build_program(EvalItem(id="m", benchmark="gsm8k", kind="math", prompt="", messages=()), "x")


@pytest.mark.realdata
def test_sandbox_oracle_humaneval_canonical_solutions_all_pass(shared_data):
    items = load_humaneval(shared_data)
    results = run_programs([reference_program(item) for item in items], SandboxLimits(wall_s=20), workers=2)
    failures = [(item.id, r.verdict, r.reason) for item, r in zip(items, results, strict=True) if not r.passed]
    assert failures == []
    assert len(results) == 164


@pytest.mark.realdata
def test_sandbox_oracle_humaneval_chat_replies_and_wrong_bodies(shared_data):
    """A chat reply restating the canonical function passes; a wrong body fails (not passed) for every task."""
    items = load_humaneval(shared_data)[:24]
    chat = [
        (item, f"Here you go:\n```python\n{item.prompt}{item.reference}```\nThis works because ...") for item in items
    ]
    wrong = [(item, "    return None\n") for item in items]
    results = run_completions(chat + wrong, SandboxLimits(wall_s=20), workers=2)
    assert [r.verdict for r in results[: len(items)]] == ["passed"] * len(items)
    assert all(r.verdict in ("failed", "error") for r in results[len(items) :])
    assert build_program(items[0], chat[0][1]).count("def has_close_elements") == 2  # prompt stub, then the reply


@pytest.mark.realdata
def test_sandbox_oracle_mbpp_sanitized_canonical_solutions_all_pass(shared_data):
    items = load_mbpp(shared_data, split="all")
    results = run_programs([reference_program(item) for item in items], SandboxLimits(wall_s=20), workers=2)
    failures = [(item.id, r.verdict, r.reason) for item, r in zip(items, results, strict=True) if not r.passed]
    assert failures == []
    assert len(results) == 427


@pytest.mark.realdata
@pytest.mark.slow
def test_sandbox_oracle_mbpp_full_canonical_solutions_all_pass(shared_data):
    items = load_mbpp(shared_data, variant="full", split="all")
    results = run_programs([reference_program(item) for item in items], SandboxLimits(wall_s=20), workers=2)
    failures = [(item.id, r.verdict, r.reason) for item, r in zip(items, results, strict=True) if not r.passed]
    assert failures == []
    assert len(results) == 974
