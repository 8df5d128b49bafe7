"""Unbiased pass@k (Chen et al. 2021): the chance that at least one of k samples passes, from n samples, c passing.

pass@k = 1 - C(n-c, k) / C(n, k), computed as a product so that large n does not overflow. It is an estimate over
sandbox verdicts (`verify.code`), kept apart from them so a report can recompute it from stored pass/fail lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nano2.errors import Nano2Error


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: n samples, c of them correct (stable product form)."""
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
