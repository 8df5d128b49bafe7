"""Truncated reasoning traces (Nano 2 SFT stage 3): what makes thinking-budget control work.

At inference a budget closes the trace with `</think>` at the next line end; the model must then still answer
well. Training rows for that: a verified trace cut to a sampled budget (1-2k tokens at full scale), at a line
boundary, closed with `</think>`, followed by the original, verified final answer. Only traces longer than their
budget are cut (a shorter one would be an ordinary row); the cut keeps the longest run of whole lines that fits
the budget in tokens of the configured tokenizer. A trace whose first line alone exceeds the budget is dropped
(no line boundary to cut at).

Sources: this config's reasoning rows (`<chat_dir>/reasoning`, reasoning-on ones) and reference solutions of
`gold_inputs` (GSM8K train: real reasoning text). No requests are sent. Rows go to
`<chat_dir>/truncated/subset=truncate_traces`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nano2.errors import Nano2Error
from nano2.manifest import MANIFEST_NAME, Manifest
from synthetic.inputs import iter_problems
from synthetic.prompting import load_prompt
from synthetic.records import chat_row, iter_chat_rows
from synthetic.stage import StageContext, input_refs
from synthetic.tasks.common import Parsed, TokenCounter, chosen, drop, keep, pick_int
from synthetic.tasks.problems import REASONING_TASK, reference_solution
from synthetic.tasks.reasoning import parse_target, reasoning_target

TASK = "truncate_traces"
REFERENCE_MODEL = "reference"
"""The `model` of rows whose target is a reference solution, not a generation."""


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


def run_truncate(ctx: StageContext) -> Manifest:
    """Cut verified traces (this config's reasoning rows, and reference solutions) to sampled budgets."""
    cfg = ctx.cfg.truncate
    before = ctx.snapshot()
    out = ctx.chat("truncate")
    reasoning_dir = ctx.cfg.stage_dir("reasoning")
    inputs: list[str | Path] = [*([reasoning_dir] if cfg.from_reasoning else []), *(s.path for s in cfg.gold_inputs)]
    if cfg.from_reasoning and not (reasoning_dir / MANIFEST_NAME).exists():
        raise Nano2Error(f"truncate: {reasoning_dir} has no manifest; run the reasoning stage first")
    prompt = load_prompt("reasoning_math")

    def sources() -> Iterator[tuple[str, list[dict[str, str]], str, str, dict[str, Any]]]:
        """(source id, prompt turns, trace, answer, origin) of every verified trace."""
        if cfg.from_reasoning:
            for row in iter_chat_rows(reasoning_dir):
                if not ctx.in_shard(row["id"]):
                    continue
                split = parse_target(row["messages"][-1]["content"]) if row["reasoning"] else None
                if split is not None:
                    origin = {"origin": REASONING_TASK, "model": row["model"], "sampling": row["sampling"],
                              "prompt": row["prompt_version"]}  # fmt: skip
                    yield row["id"], row["messages"][:-1], *split, origin
        for spec in cfg.gold_inputs:
            for problem in iter_problems(spec):
                if not ctx.in_shard(problem.id):
                    continue
                solution = reference_solution(problem, spec)
                if solution is None or not problem.text.strip():
                    out.drop(TASK, problem.id, "no_reference_solution")
                    continue
                origin = {"origin": "reference_solution", "model": REFERENCE_MODEL, "sampling": "{}",
                          "prompt": prompt.tag}  # fmt: skip
                messages = prompt.messages(True, problem=problem.text.strip())
                yield problem.id, messages, *solution, origin

    for source_id, prompt_turns, trace, answer, origin in sources():
        if not gets_truncated(cfg.share, ctx.cfg.seed, source_id):
            continue
        cut = truncated_sample(trace, answer, cfg.budget_min, cfg.budget_max, ctx.cfg.seed, source_id, ctx.counter)
        if not cut.ok:
            out.drop(TASK, source_id, cut.drop or "", cut.details)
            continue
        out.add(
            chat_row(
                row_id=f"{TASK}/{source_id}",
                messages=[*prompt_turns, {"role": "assistant", "content": cut.value}],
                reasoning=True,
                task=TASK,
                source_id=source_id,
                prompt_version=origin["prompt"],
                model=origin["model"],
                sampling=json.loads(origin["sampling"] or "{}"),
                metadata={"origin": origin["origin"], **cut.details},
            ),
            subset=TASK,
        )
    return ctx.finish(out, "truncate", input_refs(inputs), before)
