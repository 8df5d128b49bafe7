"""Start-up cost of the code sandbox per program: bwrap jail + harness vs a bare `python -I -S -c` of the same program.

Each side runs N small judged programs (a solution and three asserts) one after another in a fresh interpreter;
a run with N=0 measures that interpreter's own start-up and imports, which is subtracted. CPU time is the whole
process tree's, repeated, median and range; wall time likewise. The interpreter inside the jail is not a waited-for
descendant of ours (bwrap's pid-namespace init reaps it), so its CPU, which the harness reports from its own rusage
(`SandboxResult.cpu_s`), is added; only the init's own CPU (it sleeps in wait) is left out.

    .venv/bin/python benchmarks/bench_sandbox.py [--programs 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cputime import Samples, measure_python

SOLUTION = "def f(x):\n    return x + 1\n"
TESTS = "assert f(1) == 2\nassert f(5) == 6\nassert f(-1) == 0\n"


def run_programs(count: int, mode: str) -> list[float]:
    """Run `count` judged programs in the sandbox ('sandbox') or a bare interpreter ('bare'): [passed, jail CPU s]."""
    passed, jail_cpu = 0, 0.0
    if mode == "sandbox":
        from verify.sandbox import Program, run_program, sandbox_capabilities

        sandbox_capabilities()  # the one-off probe is not per program
        for _ in range(count):
            result = run_program(Program(SOLUTION, TESTS))
            passed += result.passed
            jail_cpu += result.cpu_s or 0.0
        return [passed, jail_cpu]
    for _ in range(count):
        done = subprocess.run([sys.executable, "-I", "-S", "-c", SOLUTION + TESTS], capture_output=True, check=False)
        passed += done.returncode == 0
    return [passed, jail_cpu]


def per_program(full: Samples, empty: Samples, count: int) -> tuple[float, float, float, float]:
    """Median CPU and wall seconds per program (paired by repeat), with the CPU range."""
    cpu = [(a.cpu_s + a.result[1] - b.cpu_s) / count for a, b in zip(full.runs, empty.runs, strict=True)]
    wall = [(a.wall_s - b.wall_s) / count for a, b in zip(full.runs, empty.runs, strict=True)]
    return statistics.median(cpu), min(cpu), max(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--programs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    target = "bench_sandbox:run_programs"
    for mode in ("bare", "sandbox"):
        empty = measure_python(target, [0, mode], repeats=args.repeats, name=f"{mode}, no program")
        full = measure_python(target, [args.programs, mode], repeats=args.repeats, name=f"{mode}, {args.programs}")
        if any(run.result[0] != args.programs for run in full.runs):
            raise SystemExit(f"{mode}: not every program passed: {[run.result for run in full.runs]}")
        cpu, low, high, wall = per_program(full, empty, args.programs)
        print(
            f"{mode:8s} per program: CPU {cpu * 1000:.1f} ms (range {low * 1000:.1f}-{high * 1000:.1f}, "
            f"n={args.repeats}), wall {wall * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
