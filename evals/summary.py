"""A run's summary: per benchmark group (and per family of several groups) n items, metric, score and 95% CI.

Metrics per kind: accuracy (math, choice), pass@k (code, `verify.pass_at_k`), and IFEval's four accuracies, which
are checked against IFEval's own `aggregate`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evals.config import BenchmarkConfig
from evals.intervals import Estimate, estimate
from evals.plan import PlannedItem
from evals.store import SampleStore, item_samples
from evals.tasks import Kind
from nano2.errors import Nano2Error

SUMMARY_FILE = "summary.json"
IFEVAL_METRICS = ("prompt_level_strict", "instruction_level_strict", "prompt_level_loose", "instruction_level_loose")


def _ifeval_dicts(item, follow: Sequence[bool]) -> dict[str, Any]:
    return {
        "follow_all": all(follow),
        "follow_list": list(follow),
        "per_instruction": [
            {"instruction_id": i, "followed": f} for i, f in zip(item.instruction_id_list, follow, strict=True)
        ],
    }


def _group_strata(
    kind: Kind, items: Sequence[tuple[PlannedItem, list[dict[str, Any]]]], spec: BenchmarkConfig
) -> dict[str, tuple[list[float], list[float], float | None]]:
    """metric -> (per-item numerators, per-item denominators, official score) for one group's scored items.

    The official score (IFEval's own `aggregate`) is checked against the score the strata give.
    """
    out: dict[str, tuple[list[float], list[float], float | None]] = {}
    if kind in ("math", "choice"):
        out["accuracy"] = ([float(np.mean([r["correct"] for r in rs])) for _, rs in items], [1.0] * len(items), None)
    elif kind == "code":
        from verify.pass_at_k import pass_at_k

        for k in spec.pass_k:
            eligible = [rs for _, rs in items if len(rs) >= k]
            values = [pass_at_k(len(rs), sum(bool(r["correct"]) for r in rs), k) for rs in eligible]
            out[f"pass@{k}"] = (values, [1.0] * len(values), None)
    else:
        from evals.ifeval import aggregate

        strict, loose = [], []
        for planned, rs in items:
            for r in rs:
                strict.append(_ifeval_dicts(planned.task.item, r["detail"]["strict"]))
                loose.append(_ifeval_dicts(planned.task.item, r["detail"]["loose"]))
        accuracy = aggregate(strict, loose)
        official = {
            "prompt_level_strict": accuracy.prompt_strict,
            "instruction_level_strict": accuracy.instruction_strict,
            "prompt_level_loose": accuracy.prompt_loose,
            "instruction_level_loose": accuracy.instruction_loose,
        }
        for metric in IFEVAL_METRICS:
            mode = "strict" if metric.endswith("strict") else "loose"
            if metric.startswith("prompt"):
                values = [float(np.mean([all(r["detail"][mode]) for r in rs])) for _, rs in items]
                out[metric] = (values, [1.0] * len(items), official[metric])
            else:
                followed = [float(sum(sum(r["detail"][mode]) for r in rs)) for _, rs in items]
                counts = [float(sum(len(r["detail"][mode]) for r in rs)) for _, rs in items]
                out[metric] = (followed, counts, official[metric])
    return out


@dataclass
class BenchmarkSummary:
    """summary.json's entries, plus what the manifest records: each interval's method and the unscored items."""

    entries: list[dict[str, Any]]
    ci_methods: dict[str, str]
    missing_items: dict[str, int]


def summarize(planned: Sequence[PlannedItem], store: SampleStore, resamples: int = 2000) -> BenchmarkSummary:
    """Per group (and per family when it has several groups): n items, metric, score and 95% CI."""
    entries: list[dict[str, Any]] = []
    methods: dict[str, str] = {}
    missing: dict[str, int] = defaultdict(int)
    by_family: dict[str, dict[str, list[tuple[PlannedItem, list[dict[str, Any]]]]]] = {}
    for item in planned:
        groups = by_family.setdefault(item.task.family, {})
        samples = item_samples(item, store)
        if samples:
            groups.setdefault(item.task.group, []).append((item, samples))
        else:
            groups.setdefault(item.task.group, [])
            missing[item.task.group] += 1

    def emit(name: str, metric: str, n: int, result: Estimate) -> None:
        entries.append(
            {
                "name": name,
                "n": n,
                "metric": metric,
                "score": result.score,
                "ci_low": result.ci_low,
                "ci_high": result.ci_high,
            }
        )
        methods[f"{name}/{metric}"] = result.method

    for family, groups in by_family.items():
        scored = {group: items for group, items in groups.items() if items}
        if not scored:
            continue
        first = next(iter(scored.values()))[0][0]
        per_group = {group: _group_strata(first.task.kind, items, first.spec) for group, items in scored.items()}
        for group, metrics in per_group.items():
            for metric, (num, den, official) in metrics.items():
                if not num:
                    continue
                result = estimate([(num, den)], resamples)
                if official is not None and not math.isclose(official, result.score, abs_tol=1e-9):
                    raise Nano2Error(f"{group}/{metric}: internal score mismatch ({official} vs {result.score})")
                emit(group, metric, len(num), result)
        if len(per_group) > 1:  # the family average over groups (MGSM over languages), stratified bootstrap
            for metric in next(iter(per_group.values())):
                strata = [(m[metric][0], m[metric][1]) for m in per_group.values() if m[metric][0]]
                if len(strata) == len(per_group):
                    emit(family, metric, sum(len(s[0]) for s in strata), estimate(strata, resamples))
    return BenchmarkSummary(entries, methods, dict(missing))
