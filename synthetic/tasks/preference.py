"""Preference pairs for DPO from verifiable problems: several samples of one prompt, judged by a verifier.

Nano 2's DPO data is on-policy and judged by a verifiable environment (paper-facts §5: WorkBench tool calls, aimed
at BFCL v3). WorkBench is not among our data, so the same idea runs on the problems reasoning SFT verifies (math
answers by math-verify, code by its tests): each sample of a problem is verified, the first verified sample (by
sample index) is chosen and the first failed one rejected. When none verified, the problem's reference solution can
be chosen instead (`reference_fallback`), which still contrasts a right answer with the model's own wrong one.

A sample is judged one of three ways:
- verified: it parses into trace and answer, and the answer verifies;
- failed: a real bad output the model produced: a wrong answer, failing code, no final answer, or a malformed trace
  that still closes its `</think>` (kept exactly as generated);
- unusable: nothing to learn from and no faithful way to write it as a target: a backend error, an output cut at
  the token limit, no `</think>` at all (DPO's reader needs a closed trace on a reasoning prompt), or a reference the
  verifier cannot read (no verdict is possible then).

Rows (`PREFERENCE_SCHEMA`, `<chat_dir>/preference/subset=preference`): one per problem, or one counted drop.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from nano2.contracts.chat import THINK_CLOSE, THINK_OPEN, THINK_PREFIX, preference_record
from nano2.manifest import Manifest
from synthetic.inputs import iter_problems
from synthetic.records import chat_row
from synthetic.stage import Job, StageContext, input_refs, unique
from synthetic.tasks.common import Parsed, answer_problem, drop, keep
from synthetic.tasks.problems import problem_drop, problem_job, reference_solution, verify_answer
from synthetic.tasks.reasoning import reasoning_target, split_reasoning

TASK = "preference"

Status = Literal["verified", "failed", "unusable"]
POLICY_SAMPLE, REFERENCE_SOLUTION = "policy_sample", "reference_solution"
VERIFIED = "verified"
NO_VERDICT = frozenset({"reference_unparseable"})  # the verifier failed, not the sample


@dataclass(frozen=True)
class SampleVerdict:
    """One sample's judgement: `reason` is "verified" or why it failed / is unusable; `target` is the assistant
    string in the contract's reasoning-on shape (None when unusable)."""

    index: int
    status: Status
    reason: str
    target: str | None


@dataclass(frozen=True)
class PreferencePair:
    chosen: str
    chosen_origin: str
    chosen_sample: int | None
    rejected: str
    rejected_sample: int | None
    rejected_reason: str


def malformed_target(completion: str) -> str | None:
    """A completion that does not parse, written as the reasoning-on target it was generated as ("<think>\\n" +
    completion), when it closes its trace; None when it never does (such a target cannot be trained on)."""
    body = (completion or "").strip().removeprefix(THINK_OPEN).strip()
    return f"{THINK_PREFIX}{body}" if THINK_CLOSE in body else None


def unusable_sample(index: int, reason: str) -> SampleVerdict:
    """A sample the generic response checks rejected (backend error, empty response, cut at the token limit)."""
    return SampleVerdict(index, "unusable", reason, None)


def judge_sample(index: int, completion: str, verify: Callable[[str], Parsed]) -> SampleVerdict:
    """Split a reasoning completion into trace and answer and verify the answer (`verify` gets the answer part)."""
    split = split_reasoning(completion)
    if not split.ok:
        target = malformed_target(completion)
        return SampleVerdict(index, "failed" if target else "unusable", split.drop or "", target)
    trace, answer = split.value
    target = reasoning_target(trace, answer)
    verdict = verify(answer)
    if verdict.ok:
        return SampleVerdict(index, "verified", VERIFIED, target)
    reason = verdict.drop or ""
    return SampleVerdict(index, "unusable" if reason in NO_VERDICT else "failed", reason, target)


def tally(verdicts: Sequence[SampleVerdict]) -> dict[str, int]:
    return dict(Counter(v.reason for v in verdicts))


def choose_pair(verdicts: Sequence[SampleVerdict], reference: str | None) -> Parsed:
    """The pair of one problem, or why there is none.

    `reference` is the reference solution as a target (None when there is none or the fallback is off).
    """
    ordered = sorted(verdicts, key=lambda v: v.index)
    details = {"samples": len(ordered), **tally(ordered)}
    if all(v.status == "unusable" for v in ordered):
        return drop("no_usable_samples", **details)
    verified = next((v for v in ordered if v.status == "verified"), None)
    failed = next((v for v in ordered if v.status == "failed"), None)
    if verified is not None and verified.target is not None:
        chosen, origin, chosen_sample = verified.target, POLICY_SAMPLE, verified.index
    elif reference is not None:
        chosen, origin, chosen_sample = reference, REFERENCE_SOLUTION, None
    else:
        return drop("no_chosen", **details)
    if failed is None or failed.target is None:
        return drop("no_rejected", **details)
    if failed.target == chosen:
        return drop("chosen_equals_rejected", **details)
    return keep(PreferencePair(chosen, origin, chosen_sample, failed.target, failed.index, failed.reason), **details)


def mismatched_pair(reference: str, other_reference: str, details: dict) -> Parsed:
    """The problem's reference solution against another problem's (whose different answer cannot verify here): the
    fallback when the model produced nothing usable (`mismatched_fallback`)."""
    return keep(
        PreferencePair(reference, REFERENCE_SOLUTION, None, other_reference, None, "mismatched_reference"), **details
    )


def run_preference(ctx: StageContext) -> Manifest:
    """DPO pairs: `samples` completions per problem, each verified; chosen = the first verified (or the reference
    solution when none is and `reference_fallback` is on), rejected = the first failed. One row or one counted drop
    per problem."""
    cfg = ctx.cfg.preference
    before = ctx.snapshot()
    out = ctx.preferences("preference")
    verdicts_seen: Counter[str] = Counter()
    origins: Counter[str] = Counter()

    def jobs() -> Iterator[Job]:
        for spec_index, spec in enumerate(cfg.inputs):
            for problem in unique(p for p in iter_problems(spec) if ctx.in_shard(p.id)):
                reason = problem_drop(problem, spec)
                if reason is not None:
                    out.drop(TASK, problem.id, reason)
                    continue
                reference = reference_solution(problem, spec) if spec.kind == "math" else None
                for sample in range(cfg.settings.samples):
                    job = problem_job(problem, spec, ctx.cfg.seed, cfg.settings, sample, task=TASK)
                    job.payload.update(group=(spec_index, problem.id), reference_solution=reference)
                    yield job

    answered = ctx.generator.run(jobs())
    previous: tuple[str, str] | None = None  # (gold answer, reference target) of the last problem with a reference
    for _, group in itertools.groupby(answered, key=lambda pair: pair[0].payload["group"]):
        samples = list(group)
        first: Job = samples[0][0]
        verdicts = []
        for job, response in samples:
            unusable = answer_problem(response, cfg.settings)
            if unusable is not None:
                verdicts.append(unusable_sample(job.sample_index, unusable.drop or ""))
                continue
            verify = functools.partial(verify_answer, job.payload, code_timeout_s=cfg.code_timeout_s)
            verdicts.append(judge_sample(job.sample_index, response.texts[0], verify))
        verdicts_seen.update(v.reason for v in verdicts)
        solution = first.payload["reference_solution"] if cfg.reference_fallback else None
        reference_target = reasoning_target(*solution) if solution else None
        pair = choose_pair(verdicts, reference_target)
        gold = first.payload.get("reference")
        # nothing usable from the model: the previous problem's reference (a different, so verifiably wrong,
        # answer) is the rejected side of this problem's reference
        fallback = not pair.ok and pair.drop == "no_usable_samples" and cfg.mismatched_fallback
        if fallback and reference_target and previous is not None and previous[0] != gold:
            pair = mismatched_pair(reference_target, previous[1], pair.details)
        if reference_target and gold is not None:
            previous = (gold, reference_target)
        if not pair.ok:
            details = {**pair.details, "reference_solution": solution is not None}
            out.drop(TASK, first.source_id, pair.drop or "", details)
            continue
        picked: PreferencePair = pair.value
        chosen_conversation = chat_row(
            row_id=f"{TASK}/{first.source_id}",
            messages=[*first.messages, {"role": "assistant", "content": picked.chosen}],
            reasoning=True,
            task=TASK,
            source_id=first.source_id,
            prompt_version=first.prompt.tag,
            model=ctx.model,
            sampling=first.sampling.to_dict(),  # sample i used seed + i
            metadata={
                "kind": first.payload["kind"],
                "reference": first.payload.get("reference"),
                "chosen_origin": picked.chosen_origin,
                "chosen_sample": picked.chosen_sample,
                "rejected_sample": picked.rejected_sample,
                "rejected_reason": picked.rejected_reason,
                "sample_verdicts": [v.reason for v in sorted(verdicts, key=lambda v: v.index)],
                "chosen_tokens": ctx.counter.count(picked.chosen),
                "rejected_tokens": ctx.counter.count(picked.rejected),
            },
        )
        row = preference_record(chosen_conversation, chosen=picked.chosen, rejected=picked.rejected)
        if out.add(row, subset=TASK):
            origins[picked.chosen_origin] += 1
    return ctx.finish(
        out,
        "preference",
        input_refs(s.path for s in cfg.inputs),
        before,
        sample_verdicts=dict(sorted(verdicts_seen.items())),
        chosen_origin=dict(sorted(origins.items())),
    )
