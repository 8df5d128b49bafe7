"""Compile a plan for 10,000 sources x 4 phases and print the time (goal: under 1 s).

Also times the same compile through the exact-rational reference (Python Fractions for every quota), so the
printed ratio shows what the integer largest-remainder path buys. Both must produce identical sequence counts.
"""

from __future__ import annotations

import random
import time
from fractions import Fraction

from mixtures.compiler import compile_plan
from mixtures.spec import MixtureSpec

N_SOURCES = 10_000
N_PHASES = 4
GOAL_S = 1.0


def make_spec(seed: int = 0) -> MixtureSpec:
    rnd = random.Random(seed)
    names = [f"source-{i:05d}" for i in range(N_SOURCES)]
    phases = []
    for p, until in enumerate((0.4, 0.6, 0.9, 1.0)[:N_PHASES]):
        raw = [rnd.randint(1, 10_000) for _ in names]
        total = sum(raw)
        micro = [r * 10**6 // total for r in raw]
        micro[0] += 10**6 - sum(micro)
        phases.append(
            {
                "name": f"phase{p + 1}",
                "until": until,
                "weights": {n: m / 10**6 for n, m in zip(names, micro, strict=True)},
            }
        )
    return MixtureSpec.model_validate(
        {
            "name": "bench",
            "seq_len": 8192,
            "global_batch_size": 736,
            "total_tokens": "20T",
            "sources": {n: {"tokens": "100B", "max_epochs": 10} for n in names},
            "phases": phases,
        }
    )


def reference_counts(spec: MixtureSpec, sequences_per_phase: list[int]) -> list[dict[str, int]]:
    """Largest remainder on Fractions: the obvious, slow implementation."""
    out = []
    for phase, total in zip(spec.phases, sequences_per_phase, strict=True):
        weights = {k: Fraction(repr(v)) for k, v in phase.weights.items()}
        norm = sum(weights.values())
        quotas = {k: w / norm * total for k, w in weights.items()}
        counts = {k: int(q) for k, q in quotas.items()}
        left = total - sum(counts.values())
        for k in sorted(quotas, key=lambda k: (-(quotas[k] - counts[k]), k))[:left]:
            counts[k] += 1
        out.append(counts)
    return out


def main() -> None:
    spec = make_spec()
    tokens = {n: s.tokens for n, s in spec.sources.items()}
    compile_plan(spec, tokens)  # warm-up
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        plan = compile_plan(spec, tokens)
        runs.append(time.perf_counter() - t0)
    best = min(runs)
    t0 = time.perf_counter()
    ref = reference_counts(spec, [p.sequences for p in plan.phases])
    ref_s = time.perf_counter() - t0
    for phase, counts in zip(plan.phases, ref, strict=True):
        assert {a.name: a.sequences for a in phase.sources} == counts, "compiler disagrees with the reference"
    print(f"compile_plan: {N_SOURCES:,} sources x {N_PHASES} phases: best of 3 = {best:.3f} s (goal < {GOAL_S} s)")
    print(f"exact-Fraction reference (allocation only): {ref_s:.3f} s; ratio reference/compiler = {ref_s / best:.2f}x")
    print(f"result: {'PASS' if best < GOAL_S else 'SLOW'}; plan total_tokens = {plan.total_tokens:,}")


if __name__ == "__main__":
    main()
