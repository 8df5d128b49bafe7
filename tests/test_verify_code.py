"""verify.code and verify.pass_at_k: the code a reply answers with, its test program, and unbiased pass@k."""

from __future__ import annotations

import itertools
import random

import pytest

from nano2.errors import Nano2Error
from verify.code import extract_code, fenced_code, program_with_tests, run_tests, truncate_at_stop
from verify.pass_at_k import mean_pass_at_k, pass_at_k
from verify.sandbox import SandboxLimits

LIMITS = SandboxLimits(wall_s=5, cpu_s=5, memory_mb=512)


def _brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """The fraction of k-subsets of n samples (c correct) that contain at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_subset_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    assert pass_at_k(1000, 0, 100) == 0.0
    assert pass_at_k(1000, 950, 100) == 1.0
    assert 0.0 < pass_at_k(2000, 3, 50) < 1.0


def test_pass_at_k_rejects_impossible_counts():
    for n, c, k in [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_mean_pass_at_k_averages_problems():
    rng = random.Random(0)
    outcomes = {f"p{i}": [rng.random() < 0.3 for _ in range(6)] for i in range(20)}
    summary = mean_pass_at_k(outcomes, ks=(1, 5))
    assert summary[1] == pytest.approx(sum(sum(v) / 6 for v in outcomes.values()) / 20)
    expected_5 = sum(_brute_force_pass_at_k(6, sum(v), 5) for v in outcomes.values()) / 20
    assert summary[5] == pytest.approx(expected_5)
    with pytest.raises(Nano2Error, match="at least 10 samples"):
        mean_pass_at_k(outcomes, ks=(10,))


def test_extract_code_prefers_the_block_defining_the_entry_point():
    reply = "Here:\n```python\nimport math\n```\nand\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert extract_code(reply, "add") == ("def add(a, b):\n    return a + b", True)
    assert extract_code(reply) == ("def add(a, b):\n    return a + b", True)
    assert extract_code("    return a + b\n") == ("    return a + b\n", False)
    assert extract_code("```py\nx = 1") == ("x = 1", True)  # an unclosed block runs to the end
    assert extract_code("```bash\nls\n```") == ("```bash\nls\n```", False)


def test_truncate_at_stop_cuts_at_the_earliest_stop():
    assert truncate_at_stop("a\nb\ndef c():\n#x", ("\n#", "\ndef ")) == "a\nb"
    assert truncate_at_stop("no stop", ("[DONE]",)) == "no stop"


def test_fenced_code_takes_the_last_answer_block():
    blocks = "```js\nx\n```\n```py\nfirst\n```\n```python\nsecond\n```"
    assert fenced_code(blocks) == "second"  # no block defines a function: the reply's last code
    two_versions = "```python\ndef f():\n    return 1\n```\nBetter:\n```python\ndef f():\n    return 2\n```"
    assert fenced_code(two_versions) == "def f():\n    return 2"
    with_usage = "```python\ndef f():\n    return 1\n```\nUsage:\n```python\nprint(f())\n```"
    assert fenced_code(with_usage) == "def f():\n    return 1"  # a block with a def beats a later usage example
    assert fenced_code("def f(): return 1") is None


def test_run_tests_judges_in_the_sandbox():
    tests = "assert add(2, 3) == 5\n"
    assert program_with_tests("def add(a, b):\n    return a + b\n", tests, "import math") == (
        "import math\n\ndef add(a, b):\n    return a + b\n\n\nassert add(2, 3) == 5\n"
    )
    assert run_tests("def add(a, b):\n    return a + b\n", tests, limits=LIMITS).verdict == "passed"
    assert run_tests("def add(a, b):\n    return a - b\n", tests, limits=LIMITS).verdict == "failed"
    escape = run_tests("import os\nos.system('ls /')\ndef add(a, b):\n    return a + b\n", tests, limits=LIMITS)
    assert escape.verdict == "blocked" and "os.system" in escape.reason
