"""IFEval scoring: load prompts, check one instruction, score a response, aggregate the four IFEval numbers.

Strict mode checks the response as it is. Loose mode (the paper's upper bound) also accepts the response with its
first line, its last line or both removed, and each of those with every `*` deleted: an instruction is followed if
any variant follows it. A blank response follows nothing in either mode.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.ifeval.registry import get_instruction
from nano2.errors import Nano2Error


@dataclass(frozen=True)
class IFEvalItem:
    """One IFEval prompt: its key, text, instruction ids and the kwargs of each instruction (same order)."""

    key: int | str
    prompt: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[Mapping[str, Any], ...]


def item_from_record(record: Mapping[str, Any], where: str = "record") -> IFEvalItem:
    """Validate one input row (ids known, kwargs well-formed) and return it as an item."""
    missing = [name for name in ("key", "prompt", "instruction_id_list", "kwargs") if name not in record]
    if missing:
        raise Nano2Error(f"{where}: missing field(s) {', '.join(missing)}")
    ids, kwargs = record["instruction_id_list"], record["kwargs"]
    if not isinstance(record["prompt"], str) or not isinstance(ids, list) or not isinstance(kwargs, list):
        raise Nano2Error(f"{where}: prompt must be a string and instruction_id_list/kwargs lists")
    if len(ids) != len(kwargs):
        raise Nano2Error(f"{where}: {len(ids)} instruction ids but {len(kwargs)} kwargs entries")
    for instruction_id, instruction_kwargs in zip(ids, kwargs, strict=True):
        try:
            get_instruction(instruction_id).parse_args(instruction_kwargs)
        except Nano2Error as exc:
            raise Nano2Error(f"{where} (key {record['key']}): {exc}") from None
    return IFEvalItem(record["key"], record["prompt"], tuple(ids), tuple(dict(k or {}) for k in kwargs))


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def load_items(path: str | Path) -> Iterator[IFEvalItem]:
    """IFEval items from an input JSONL(.gz) file (key, prompt, instruction_id_list, kwargs), validated row by row."""
    path = Path(path)
    if not path.is_file():
        raise Nano2Error(f"IFEval input file not found: {path}")
    with _open_text(path) as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise Nano2Error(f"{where}: not valid JSON ({exc.msg})") from None
            yield item_from_record(record, where)


def loose_variants(response: str) -> list[str]:
    """The response variants loose mode accepts, duplicates removed (order kept)."""
    lines = response.split("\n")
    without_first = "\n".join(lines[1:]).strip()
    without_last = "\n".join(lines[:-1]).strip()
    without_both = "\n".join(lines[1:-1]).strip()
    variants = [response, without_first, without_last, without_both]
    variants += [variant.replace("*", "") for variant in variants]
    return list(dict.fromkeys(variants))


def check_instruction(
    instruction_id: str, kwargs: Mapping[str, Any] | None, prompt: str, response: str | None, loose: bool = False
) -> bool:
    """Whether `response` follows one instruction (strict, or loose: any variant follows it)."""
    spec = get_instruction(instruction_id)
    args = spec.parse_args(kwargs)
    if not isinstance(response, str):
        return False
    candidates = loose_variants(response) if loose else [response]
    return any(candidate.strip() and spec.check(args, prompt, candidate) for candidate in candidates)


def score_response(item: IFEvalItem, response: str | None, loose: bool = False) -> dict[str, Any]:
    """Verdicts for every instruction of `item`: follow_all, follow_list and per_instruction (id, kwargs, followed)."""
    follow_list = [
        check_instruction(instruction_id, kwargs, item.prompt, response, loose=loose)
        for instruction_id, kwargs in zip(item.instruction_id_list, item.kwargs, strict=True)
    ]
    return {
        "key": item.key,
        "mode": "loose" if loose else "strict",
        "follow_all": all(follow_list),
        "follow_list": follow_list,
        "per_instruction": [
            {"instruction_id": instruction_id, "kwargs": dict(kwargs), "followed": followed}
            for instruction_id, kwargs, followed in zip(item.instruction_id_list, item.kwargs, follow_list, strict=True)
        ],
    }


@dataclass
class IFEvalAccuracy:
    """The four IFEval numbers plus accuracy per instruction id, both modes."""

    prompt_strict: float
    instruction_strict: float
    prompt_loose: float
    instruction_loose: float
    prompts: int
    instructions: int
    by_instruction: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_level_strict": self.prompt_strict,
            "instruction_level_strict": self.instruction_strict,
            "prompt_level_loose": self.prompt_loose,
            "instruction_level_loose": self.instruction_loose,
            "prompts": self.prompts,
            "instructions": self.instructions,
            "by_instruction": self.by_instruction,
        }


def _levels(scores: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    prompt_level = sum(score["follow_all"] for score in scores) / len(scores)
    verdicts = [followed for score in scores for followed in score["follow_list"]]
    return prompt_level, (sum(verdicts) / len(verdicts) if verdicts else 0.0)


def aggregate(strict_scores: Sequence[Mapping[str, Any]], loose_scores: Sequence[Mapping[str, Any]]) -> IFEvalAccuracy:
    """Prompt-level (all instructions of a prompt followed) and instruction-level accuracy, strict and loose."""
    if not strict_scores or len(strict_scores) != len(loose_scores):
        raise Nano2Error(
            f"need the same non-zero number of strict and loose scores, got {len(strict_scores)} and "
            f"{len(loose_scores)}"
        )
    prompt_strict, instruction_strict = _levels(strict_scores)
    prompt_loose, instruction_loose = _levels(loose_scores)
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "strict": 0, "loose": 0})
    for strict, loose in zip(strict_scores, loose_scores, strict=True):
        for strict_entry, loose_entry in zip(strict["per_instruction"], loose["per_instruction"], strict=True):
            counts = totals[strict_entry["instruction_id"]]
            counts["n"] += 1
            counts["strict"] += strict_entry["followed"]
            counts["loose"] += loose_entry["followed"]
    by_instruction = {
        instruction_id: {"n": c["n"], "strict": c["strict"] / c["n"], "loose": c["loose"] / c["n"]}
        for instruction_id, c in sorted(totals.items())
    }
    return IFEvalAccuracy(
        prompt_strict=prompt_strict,
        instruction_strict=instruction_strict,
        prompt_loose=prompt_loose,
        instruction_loose=instruction_loose,
        prompts=len(strict_scores),
        instructions=sum(len(score["follow_list"]) for score in strict_scores),
        by_instruction=by_instruction,
    )


def evaluate(items: Iterable[IFEvalItem], responses: Mapping[Any, str | None]) -> IFEvalAccuracy:
    """Score every item against `responses[item.key]` (a missing response follows nothing) and aggregate."""
    strict_scores, loose_scores = [], []
    for item in items:
        response = responses.get(item.key)
        strict_scores.append(score_response(item, response, loose=False))
        loose_scores.append(score_response(item, response, loose=True))
    return aggregate(strict_scores, loose_scores)
