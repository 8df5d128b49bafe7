"""Truncated reasoning traces (Nano 2 SFT stage 3): what makes thinking-budget control work.

At inference a budget closes the trace with `</think>` at the next line end; the model must then still answer
well. Training rows for that: a verified trace cut to a sampled budget (1-2k tokens at full scale), at a line
boundary, closed with `</think>`, followed by the original, verified final answer. Only traces longer than their
budget are cut (a shorter one would be an ordinary row); the cut keeps the longest run of whole lines that fits
the budget in tokens of the configured tokenizer. A trace whose first line alone exceeds the budget is dropped
(no line boundary to cut at).
"""

from __future__ import annotations

from synthetic.tasks.common import Parsed, TokenCounter, chosen, drop, keep, pick_int
from synthetic.tasks.reasoning import reasoning_target


def cut_at_line_boundary(trace: str, budget: int, counter: TokenCounter) -> Parsed:
    """The longest prefix of whole lines of `trace` with at most `budget` tokens."""
    total = counter.count(trace)
    if total <= budget:
        return drop("within_budget", trace_tokens=total, budget=budget)
    lines = trace.split("\n")
    low, high = 0, len(lines)  # invariant: the first `low` lines fit; the first `high + 1` do not (or high = all)
    while low < high:
        mid = (low + high + 1) // 2
        if counter.count("\n".join(lines[:mid]).rstrip()) <= budget:
            low = mid
        else:
            high = mid - 1
    kept = "\n".join(lines[:low]).rstrip()
    if not kept.strip():
        return drop("no_line_boundary_within_budget", trace_tokens=total, budget=budget)
    return keep(kept, trace_tokens=total, kept_tokens=counter.count(kept), kept_lines=low, budget=budget)


def truncated_sample(
    trace: str, answer: str, budget_min: int, budget_max: int, seed: int, source_id: str, counter: TokenCounter
) -> Parsed:
    """A truncated-trace target for one verified (trace, answer), its budget sampled from [budget_min, budget_max]."""
    budget = pick_int(budget_min, budget_max, seed, source_id, "budget")
    cut = cut_at_line_boundary(trace, budget, counter)
    if not cut.ok:
        return cut
    return keep(reasoning_target(cut.value, answer), **cut.details)


def gets_truncated(share: float, seed: int, source_id: str) -> bool:
    return chosen(share, seed, source_id, "truncate")
