"""CPU time of a whole process tree, repeated, summarised as median and range: the one timer every benchmark uses.

Why a child process: `getrusage(RUSAGE_SELF)` misses the workers a pipeline starts (datatrove's pool, ScanCode's
processes), and wall time depends on how busy the machine is. Each measurement here runs the workload in a fresh
child and reads that child's rusage from `os.wait4`, which includes every descendant the child waited for (pool
workers are always waited for). CPU seconds = user + system of the whole tree, so a ratio between two workloads
does not move when other jobs share the machine (they take wall time, not our CPU time).

    from cputime import measure_python, compare
    a = measure_python("mymodule:work", ["arg"], repeats=3)     # -> Samples
    print(compare("ours", a, "reference", b))                  # 'reference / ours = 2.41x (range 2.30-2.52)'
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Run:
    """One run of a workload in a child process: CPU seconds of the tree, wall seconds, and what it printed."""

    cpu_s: float
    wall_s: float
    stdout: str
    result: object = None


@dataclass
class Samples:
    """Repeated runs of one workload."""

    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def cpu(self) -> list[float]:
        return [r.cpu_s for r in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def low(self) -> float:
        return min(self.cpu)

    @property
    def high(self) -> float:
        return max(self.cpu)

    def describe(self, per: float = 1.0, unit: str = "s") -> str:
        """'1.23 s (range 1.20-1.31, n=3)'; `per` divides (e.g. by documents for seconds per document)."""
        return f"{self.median / per:.4g} {unit} (range {self.low / per:.4g}-{self.high / per:.4g}, n={len(self.runs)})"


def run_tree(argv: list[str], *, cwd: str | Path | None = None, env: dict[str, str] | None = None) -> Run:
    """Run `argv` to completion; CPU seconds of it and every descendant it waited for. Fails loudly on non-zero exit."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE)
        # wait4 on this pid returns the rusage of the child and its waited-for descendants
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        out.seek(0)
        stdout = out.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{stderr[-4000:]}")
    return Run(cpu_s=usage.ru_utime + usage.ru_stime, wall_s=wall, stdout=stdout)


_CHILD = """
import importlib, json, sys
module, _, name = sys.argv[1].partition(":")
result = getattr(importlib.import_module(module), name)(*json.loads(sys.argv[2]))
print("\\n__RESULT__" + json.dumps(result, default=str))
"""


def measure_python(
    target: str,
    args: list | None = None,
    *,
    repeats: int = 3,
    name: str | None = None,
    env: dict[str, str] | None = None,
    threads: int | None = 1,
) -> Samples:
    """Call `module:function(*args)` in a fresh interpreter `repeats` times; the function's JSON-able return value
    is kept on each run (`Run.result`). `threads` pins OpenMP/BLAS threads so runs compare like with like.

    Interpreter start-up and imports are inside the measurement; measure a no-op target to subtract them if the
    workload is small."""
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), str(REPO / "benchmarks"), child_env.get("PYTHONPATH", "")) if p
    )
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            child_env[var] = str(threads)
    samples = Samples(name or target)
    for _ in range(repeats):
        run = run_tree([sys.executable, "-c", _CHILD, target, json.dumps(args or [])], env=child_env)
        text, _, tail = run.stdout.rpartition("\n__RESULT__")
        samples.runs.append(Run(run.cpu_s, run.wall_s, text, json.loads(tail) if tail else None))
    return samples


def ratio(slow: Samples, fast: Samples) -> tuple[float, float, float]:
    """slow / fast CPU time: median of the per-repeat ratios (paired by repeat index), and their range."""
    pairs = [s / f for s, f in zip(slow.cpu, fast.cpu, strict=True) if f > 0]
    if not pairs:
        raise ValueError("no CPU time measured for the fast side")
    return statistics.median(pairs), min(pairs), max(pairs)


def compare(fast: Samples, slow: Samples) -> str:
    """One line: 'slow / fast CPU time = 2.41x (range 2.30-2.52, n=3)'."""
    mid, lo, hi = ratio(slow, fast)
    return f"{slow.name} / {fast.name} CPU time = {mid:.2f}x (range {lo:.2f}-{hi:.2f}, n={len(fast.runs)})"
