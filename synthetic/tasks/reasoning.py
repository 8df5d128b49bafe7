"""Verified reasoning SFT: problems -> `<think>trace</think>` + answer, kept only when the answer is right.

The request is a reasoning-on chat (the template opens `<think>`), so the completion is `trace </think> answer`
(a leading `<think>` is tolerated). Math answers are the last `#### X` line or the last `\\boxed{X}` of the answer
part, compared with the reference by math-verify; code answers are the last fenced code block, run with the
problem's tests in a fresh Python subprocess with a timeout (a non-zero exit or a timeout is a failure). Anything
unverified is dropped with its reason.

Empty traces (Nano 2 SFT stage 1: ~10% of prompts, which teaches reasoning-off): a hashed `empty_trace_share` of
the verified rows keep only the answer, as reasoning-off rows with `/no_think` in the system message. Running
model code is isolated only by a subprocess, a temp directory, a CPU-time and memory limit and a scrubbed
environment; at scale run the pipeline inside a container.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from synthetic.tasks.common import Parsed, chosen, drop, keep

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_GSM8K_FINAL = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)
_CALCULATOR = re.compile(r"<<[^<>]*>>")
_CODE_BLOCK = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)


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


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (balanced braces), or None."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = text.find("{", start)
        if i == -1:
            return None
        depth = 0
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1 : j].strip()
        start = text.rfind("\\boxed", 0, start)
    return None


def final_answer(text: str) -> str | None:
    """The stated final answer: the last `#### X` line, else the last `\\boxed{X}`."""
    marks = _GSM8K_FINAL.findall(text or "")
    if marks:
        return marks[-1].strip()
    return last_boxed(text or "")


def gsm8k_gold(solution: str) -> str | None:
    """The reference answer of a GSM8K solution (its `#### N` line)."""
    marks = _GSM8K_FINAL.findall(solution or "")
    return marks[-1].replace(",", "").strip() if marks else None


def gsm8k_trace(solution: str) -> tuple[str, str] | None:
    """A GSM8K gold solution as (trace, answer): the worked lines without calculator marks, and the `#### N` line."""
    lines = (solution or "").strip().splitlines()
    if not lines or not _GSM8K_FINAL.match(lines[-1]):
        return None
    trace = "\n".join(_CALCULATOR.sub("", line).rstrip() for line in lines[:-1]).strip()
    return (trace, lines[-1].strip()) if trace else None


def verify_math(answer: str, gold: str) -> Parsed:
    """math-verify equivalence of the answer's final answer and the reference.

    math-verify guards parsing with SIGALRM timeouts, which only work on the main thread; elsewhere they are off.
    """
    import threading

    from math_verify import parse, verify

    stated = final_answer(answer)
    if stated is None:
        return drop("no_final_answer")
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parsed = parse(gold, parsing_timeout=timeout)
    if not gold_parsed:
        return drop("reference_unparseable", reference=gold)
    predicted = parse(stated, parsing_timeout=timeout)
    if not predicted:
        return drop("answer_unparseable", answer=stated[:200])
    if not verify(gold_parsed, predicted, timeout_seconds=timeout):
        return drop("wrong_answer", answer=stated[:200], reference=gold)
    return keep(stated, reference=gold)


def last_code_block(text: str) -> str | None:
    blocks = [(lang.lower(), code) for lang, code in _CODE_BLOCK.findall(text or "")]
    python = [code for lang, code in blocks if lang in ("python", "py", "python3", "")]
    return python[-1].strip() if python else None


def _limit_resources(memory_bytes: int, cpu_seconds: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        os.setsid()

    return apply


def run_python_tests(
    code: str, tests: Sequence[str], setup: str = "", timeout_s: float = 10.0, memory_mb: int = 1024
) -> Parsed:
    """Run code + its tests in a fresh interpreter (`-I`: no site, no user paths) in a temp dir."""
    if not tests:
        return drop("no_tests")
    script = "\n\n".join([setup.strip(), code.strip(), *[t.strip() for t in tests]]).strip() + "\n"
    with tempfile.TemporaryDirectory(prefix="nano2-verify-") as tmp:
        path = Path(tmp) / "solution_test.py"
        path.write_text(script, encoding="utf-8")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHASHSEED": "0", "HOME": tmp}
        try:
            proc = subprocess.run(
                [sys.executable, "-I", str(path)],
                cwd=tmp,
                env=env,
                capture_output=True,
                timeout=timeout_s,
                preexec_fn=_limit_resources(memory_mb * 2**20, max(1, int(timeout_s) + 1)),
            )
        except subprocess.TimeoutExpired:
            return drop("tests_timeout", timeout_s=timeout_s)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        return drop("tests_failed", returncode=proc.returncode, error=tail[0][:200])
    return keep(code, tests=len(tests))


def verify_code(answer: str, tests: Sequence[str], setup: str = "", timeout_s: float = 10.0) -> Parsed:
    code = last_code_block(answer)
    if code is None:
        return drop("no_code_block")
    return run_python_tests(code, tests, setup=setup, timeout_s=timeout_s)


def gets_empty_trace(share: float, seed: int, source_id: str, sample_index: int) -> bool:
    """Whether this verified sample becomes a reasoning-off row (hashed, so reruns agree)."""
    return chosen(share, seed, source_id, sample_index, "empty-trace")
