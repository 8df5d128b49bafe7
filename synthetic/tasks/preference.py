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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from synthetic.tasks.common import Parsed, drop, keep
from synthetic.tasks.reasoning import THINK_CLOSE, THINK_OPEN, reasoning_target, split_reasoning

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
    return f"{THINK_OPEN}\n{body}" if THINK_CLOSE in body else None


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
