"""The reasoning SFT stage: ask each verifiable problem, keep the samples whose answer verifies, as chat rows.

It lives beside `reasoning.py` (the task's parsers and its use of `verify/`) rather than in it because the
problem helpers shared by reasoning, preference and truncate (`tasks/problems.py`) build on those parsers: one
module holding both would import `problems.py` while `problems.py` imports it. A hashed `empty_trace_share` of
the verified samples become reasoning-off rows (the answer alone, `/no_think`), the rest reasoning-on rows
(`<think>\\ntrace\\n</think>\\nanswer`); both go to `<chat_dir>/reasoning/subset=reasoning_sft`.
"""

from __future__ import annotations

from collections.abc import Iterator

from nano2.manifest import Manifest
from synthetic.inputs import iter_problems
from synthetic.records import chat_row
from synthetic.stage import Job, StageContext, input_refs, unique
from synthetic.tasks.common import answer_problem
from synthetic.tasks.problems import REASONING_TASK, problem_drop, problem_job, verify_answer
from synthetic.tasks.reasoning import gets_empty_trace, reasoning_target, split_reasoning


def run_reasoning(ctx: StageContext) -> Manifest:
    cfg = ctx.cfg.reasoning
    before = ctx.snapshot()
    out = ctx.chat("reasoning")

    def jobs() -> Iterator[Job]:
        for spec in cfg.inputs:
            for problem in unique(p for p in iter_problems(spec) if ctx.in_shard(p.id)):
                reason = problem_drop(problem, spec)
                if reason is not None:
                    out.drop(REASONING_TASK, problem.id, reason)
                    continue
                for sample in range(cfg.settings.samples):
                    yield problem_job(problem, spec, ctx.cfg.seed, cfg.settings, sample)

    for job, response in ctx.generator.run(jobs()):
        parsed = answer_problem(response, cfg.settings) or split_reasoning(response.texts[0])
        if parsed.ok:
            verdict = verify_answer(job.payload, parsed.value[1], cfg.code_timeout_s)
            parsed = verdict if not verdict.ok else parsed
        if not parsed.ok:
            out.drop(REASONING_TASK, f"{job.source_id}/{job.sample_index}", parsed.drop or "", parsed.details)
            continue
        trace, answer = parsed.value
        empty = gets_empty_trace(cfg.empty_trace_share, ctx.cfg.seed, job.source_id, job.sample_index)
        if empty:
            prompt_turns, target = job.prompt.messages(False, **job.payload["fields"]), answer
        else:
            prompt_turns, target = job.messages, reasoning_target(trace, answer)
        out.add(
            chat_row(
                row_id=f"{REASONING_TASK}/{job.source_id}/{job.sample_index}",
                messages=[*prompt_turns, {"role": "assistant", "content": target}],
                reasoning=not empty,
                task=REASONING_TASK,
                source_id=job.source_id,
                prompt_version=job.prompt.tag,
                model=ctx.model,
                sampling=job.sampling.to_dict(),
                metadata={
                    "kind": job.payload["kind"],
                    "reference": job.payload.get("reference"),
                    "empty_trace": empty,
                    "trace_tokens": ctx.counter.count(trace),
                },
            ),
            subset=REASONING_TASK,
        )
    return ctx.finish(out, "reasoning", input_refs(s.path for s in cfg.inputs), before)
