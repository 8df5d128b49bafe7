"""Verifiable rewards for GRPO: math answers judged by `verify/` (as the evals are), IFEval-style rules by code.

Both rewards score the *visible answer* of a completion (``verify.visible``): the text after the reasoning trace,
cut at the end-of-turn token. A completion of a reasoning-on prompt starts inside the trace (the prompt ends with the
open marker), so a trace that never closes has no answer and scores 0.

Math (GSM8K-train): the gold answer is the `#### N` number of the dataset's answer (``verify.gsm8k``), and the
verdict is ``verify.math``'s, the judge of the eval score and of the reasoning SFT filter: 1.0 when it finds the
answer equal to the gold, else 0.0. A reward that disagreed with the eval would train for a different score.

Instruction following: a prompt carries constraints (word counts, keywords, forbidden words, no commas, lower/upper
case, an exact ending, a bullet count, JSON, quotes). Each constraint writes its own instruction sentence into the
prompt and checks it with a rule, so the text the model reads and the check applied to it cannot drift apart. The
reward is the fraction of constraints followed (IFEval's instruction-level accuracy; a denser RL signal than the
all-or-nothing prompt-level score, which `all_followed` gives).

Reward functions return None for rows of the other task, so several can share one GRPO batch (TRL skips None).
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.tokenizer import EOS, TURN_END
from nano2.contracts.chat import THINK_PREFIX
from nano2.errors import Nano2Error
from verify.gsm8k import require_gsm8k_gold
from verify.math import score_math
from verify.visible import visible_answer

TURN_END_MARKERS = (TURN_END, EOS)  # where a generated turn ends: the template's end of turn, or EOS
MATH_TASK, INSTRUCTION_TASK = "math", "instruction_following"

# --------------------------------------------------------------------------------------------------- answers


def completion_answer(completion: str, prompt: str) -> str:
    """The visible answer of one rollout: cut at the end of turn, then its reasoning removed (``verify.visible``)."""
    for marker in TURN_END_MARKERS:
        completion = completion.split(marker, 1)[0]
    return visible_answer(completion, trace_open=prompt.endswith(THINK_PREFIX))


def math_reward(answer_text: str, gold: str) -> float:
    """1.0 when ``verify.math`` judges the visible answer equal to the gold answer, else 0.0."""
    return float(score_math(gold, answer_text).correct)


def load_gsm8k(path: str | Path, limit: int | None = None, offset: int = 0) -> list[dict[str, str]]:
    """GSM8K rows {question, answer, gold} from a .jsonl or .jsonl.gz file (`limit` rows from `offset`)."""
    path = Path(path)
    if not path.is_file():
        raise Nano2Error(f"{path}: GSM8K file not found")
    opener = gzip.open if path.name.endswith(".gz") else open
    rows: list[dict[str, str]] = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line_number, line in enumerate(fh, start=1):
            if line_number <= offset or not line.strip():
                continue
            if limit is not None and len(rows) >= limit:
                break
            try:
                record = json.loads(line)
                rows.append({"question": record["question"], "answer": record["answer"]})
                rows[-1]["gold"] = require_gsm8k_gold(record["answer"])
            except (ValueError, KeyError, TypeError, Nano2Error) as exc:
                raise Nano2Error(f"{path}:{line_number}: not a GSM8K row ({exc})") from None
    if not rows:
        raise Nano2Error(f"{path}: no GSM8K rows (offset {offset}, limit {limit})")
    return rows


# --------------------------------------------------------------------------------------------------- constraints

ConstraintKind = Literal[
    "max_words", "min_words", "include_keywords", "forbid_words", "no_commas", "lowercase", "uppercase",
    "end_with", "bullet_points", "json_format", "quoted",
]  # fmt: skip
_NEEDS = {"max_words": "n", "min_words": "n", "bullet_points": "n", "include_keywords": "words",
          "forbid_words": "words", "end_with": "phrase"}  # fmt: skip
# kinds that cannot both hold (or make each other unreadable) are never drawn together
_CONFLICTS = {
    frozenset({"lowercase", "uppercase"}), frozenset({"max_words", "min_words"}), frozenset({"json_format", "quoted"}),
    frozenset({"json_format", "bullet_points"}), frozenset({"json_format", "end_with"}),
    frozenset({"quoted", "end_with"}), frozenset({"uppercase", "include_keywords"}),
    frozenset({"uppercase", "end_with"}), frozenset({"lowercase", "end_with"}), frozenset({"json_format", "no_commas"}),
}  # fmt: skip
_WORD = re.compile(r"[A-Za-z0-9']+")
_BULLET = re.compile(r"^\s*[*-]\s+\S", re.MULTILINE)


class Constraint(BaseModel):
    """One verifiable instruction: `instruction()` is what the prompt says, `check(text)` whether a reply obeys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ConstraintKind
    n: int | None = Field(default=None, gt=0)
    words: list[str] | None = None
    phrase: str | None = None

    @model_validator(mode="after")
    def _has_parameters(self) -> Constraint:
        needed = _NEEDS.get(self.kind)
        if needed is not None and not getattr(self, needed):
            raise ValueError(f"constraint {self.kind!r} needs {needed!r}")
        return self

    def instruction(self) -> str:
        words = ", ".join(f'"{w}"' for w in self.words or [])
        return {
            "max_words": f"Answer in at most {self.n} words.",
            "min_words": f"Answer in at least {self.n} words.",
            "include_keywords": f"Include the keywords {words} in your response.",
            "forbid_words": f"Do not use the words {words} in your response.",
            "no_commas": "Do not use any commas in your response.",
            "lowercase": "Your entire response must be in lowercase letters; no capital letters are allowed.",
            "uppercase": "Your entire response must be in English capital letters only.",
            "end_with": f'End your response with the exact phrase "{self.phrase}". No other words should follow it.',
            "bullet_points": f"Your answer must contain exactly {self.n} bullet points, using markdown bullets such "
            "as:\n* This is a point.",
            "json_format": "Wrap your entire output in JSON format.",
            "quoted": "Wrap your entire response with double quotation marks.",
        }[self.kind]

    def check(self, text: str) -> bool:
        words = _WORD.findall(text)
        lowered = {w.lower() for w in words}
        if self.kind == "max_words":
            return len(words) <= self.n
        if self.kind == "min_words":
            return len(words) >= self.n
        if self.kind == "include_keywords":
            return all(re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE) for w in self.words)
        if self.kind == "forbid_words":
            return not any(w.lower() in lowered for w in self.words)
        if self.kind == "no_commas":
            return "," not in text
        if self.kind == "lowercase":
            return text == text.lower() and any(c.isalpha() for c in text)
        if self.kind == "uppercase":
            return text == text.upper() and any(c.isalpha() for c in text)
        if self.kind == "end_with":
            return text.strip().endswith(self.phrase)
        if self.kind == "bullet_points":
            return len(_BULLET.findall(text)) == self.n
        if self.kind == "json_format":
            body = text.strip().removeprefix("```json").removeprefix("```JSON").removeprefix("```").removesuffix("```")
            try:
                json.loads(body.strip())
            except ValueError:
                return False
            return True
        stripped = text.strip()
        return len(stripped) > 1 and stripped[0] == '"' and stripped[-1] == '"'


def constraints_followed(text: str, constraints: Sequence[Constraint]) -> list[bool]:
    return [c.check(text) for c in constraints]


def all_followed(text: str, constraints: Sequence[Constraint]) -> bool:
    """IFEval's prompt-level strict verdict."""
    return all(constraints_followed(text, constraints))


def parse_constraints(value: str | list[Any]) -> list[Constraint]:
    """Constraints from their JSON column (a list of {kind, ...}); a malformed value is one clear error."""
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, list) or not data:
        raise Nano2Error(f"constraints: expected a non-empty JSON list, got {value!r}")
    return [Constraint.model_validate(item) for item in data]


def draw_constraints(rng: random.Random, base_text: str, count: int) -> list[Constraint]:
    """`count` mutually compatible constraints with parameters drawn from `rng` (keywords come from the prompt)."""
    kinds = list(ConstraintKind.__args__)
    candidates = sorted({w.lower() for w in _WORD.findall(base_text) if len(w) >= 5 and w.isalpha()})
    chosen: list[Constraint] = []
    rng.shuffle(kinds)
    for kind in kinds:
        if len(chosen) == count:
            break
        if any(frozenset({kind, c.kind}) in _CONFLICTS for c in chosen):
            continue
        if kind in ("include_keywords", "forbid_words"):
            if len(candidates) < 2 or any(c.kind in ("include_keywords", "forbid_words") for c in chosen):
                continue
            picked = rng.sample(candidates, 2)
            chosen.append(Constraint(kind=kind, words=picked))
        elif kind in ("max_words", "min_words"):
            chosen.append(
                Constraint(kind=kind, n=rng.choice([20, 30, 50, 80, 120] if kind == "max_words" else [10, 20, 40]))
            )
        elif kind == "bullet_points":
            chosen.append(Constraint(kind=kind, n=rng.randint(2, 5)))
        elif kind == "end_with":
            chosen.append(
                Constraint(kind=kind, phrase=rng.choice(["Is there anything else I can help with?", "That is all."]))
            )
        else:
            chosen.append(Constraint(kind=kind))
    if len(chosen) < count:
        raise Nano2Error(f"cannot draw {count} compatible constraints (got {len(chosen)})")
    return chosen


def with_instructions(base_text: str, constraints: Sequence[Constraint]) -> str:
    """The prompt text: the base request, then one instruction sentence per constraint."""
    return base_text.rstrip() + "\n\n" + "\n".join(c.instruction() for c in constraints)


# --------------------------------------------------------------------------------------------------- TRL rewards


class _CompletionReward:
    """Base for TRL reward callables: decodes completion ids with special tokens kept (TRL's `completions` strings
    have `</think>` removed, which would hide where the trace ends)."""

    __name__ = "reward"
    task = ""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def answers(self, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]]) -> list[str]:
        return [
            completion_answer(self.tokenizer.decode(list(ids), skip_special_tokens=False), prompt)
            for prompt, ids in zip(prompts, completion_ids, strict=True)
        ]


class MathReward(_CompletionReward):
    """1.0 when the visible answer equals the GSM8K gold answer (math-verify), 0.0 otherwise; None off-task."""

    __name__ = "math"
    task = MATH_TASK

    def __call__(self, prompts, completions, completion_ids, task, gold, **_: Any) -> list[float | None]:
        answers = self.answers(prompts, completion_ids)
        return [math_reward(a, g) if t == self.task else None for a, t, g in zip(answers, task, gold, strict=True)]


class InstructionReward(_CompletionReward):
    """Share of the row's constraints the visible answer follows; None off-task."""

    __name__ = "instruction_following"
    task = INSTRUCTION_TASK

    def __call__(self, prompts, completions, completion_ids, task, constraints, **_: Any) -> list[float | None]:
        answers = self.answers(prompts, completion_ids)
        out: list[float | None] = []
        for answer, row_task, spec in zip(answers, task, constraints, strict=True):
            if row_task != self.task:
                out.append(None)
                continue
            followed = constraints_followed(answer, parse_constraints(spec))
            out.append(sum(followed) / len(followed))
        return out
