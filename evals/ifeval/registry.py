"""The instruction registry: every IFEval / M-IFEval instruction id, its typed kwargs and its checker.

A checker is a plain function `(args, prompt, response) -> bool` registered under its instruction id with a pydantic
model for its kwargs, so malformed or unknown instructions fail loudly when the data is loaded, never as a silent
"not followed" at scoring time.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from nano2.errors import Nano2Error


class InstructionArgs(BaseModel):
    """Base of every kwargs model: unknown keys are an error (a typo would otherwise change the verdict silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(InstructionArgs):
    """Instructions without parameters (no commas, JSON output, ...)."""


Check = Callable[[Any, str, str], bool]


@dataclass(frozen=True)
class InstructionSpec:
    """One registered instruction: its id, kwargs model, checker and a one-line definition."""

    instruction_id: str
    args_model: type[InstructionArgs]
    check: Check
    definition: str

    def parse_args(self, kwargs: Mapping[str, Any] | None) -> InstructionArgs:
        """Validated kwargs; None values are dropped like the reference's "use the default" convention."""
        cleaned = {key: value for key, value in (kwargs or {}).items() if value is not None}
        try:
            return self.args_model.model_validate(cleaned)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'kwargs'}: {error['msg']}" for error in exc.errors()
            )
            raise Nano2Error(f"instruction {self.instruction_id!r}: bad kwargs {dict(cleaned)!r}: {problems}") from None


_REGISTRY: dict[str, InstructionSpec] = {}


def register(instruction_id: str, args_model: type[InstructionArgs], definition: str) -> Callable[[Check], Check]:
    """Decorator adding a checker to the registry under `instruction_id` (each id exactly once)."""

    def decorate(check: Check) -> Check:
        if instruction_id in _REGISTRY:
            raise ValueError(f"instruction {instruction_id!r} registered twice")
        _REGISTRY[instruction_id] = InstructionSpec(instruction_id, args_model, check, definition)
        return check

    return decorate


def get_instruction(instruction_id: str) -> InstructionSpec:
    """The spec of one instruction id; an unknown id is a user error naming the closest known ids."""
    try:
        return _REGISTRY[instruction_id]
    except KeyError:
        family = instruction_id.rsplit(":", 1)[0]
        similar = sorted(known for known in _REGISTRY if known.startswith(family))[:5]
        hint = f" (known ids in {family!r}: {', '.join(similar)})" if similar else ""
        raise Nano2Error(f"unknown IFEval instruction id {instruction_id!r}{hint}") from None


def instruction_ids() -> list[str]:
    """All registered instruction ids, sorted."""
    return sorted(_REGISTRY)


# Comparison words of the relation kwargs, per language: (count, threshold) -> bool.
RELATIONS: dict[str, Callable[[int, int], bool]] = {
    "less than": operator.lt,
    "at least": operator.ge,
    # Spanish (M-IFEval): "at least" / "at most"
    "al menos": operator.ge,
    "como máximo": operator.le,
    # French (M-IFEval): "at least" / "less than"
    "au moins": operator.ge,
    "moins de": operator.lt,
    # Japanese (M-IFEval): "or more" / "less than"
    "以上": operator.ge,
    "未満": operator.lt,
}


def compare(count: int, relation: str, threshold: int) -> bool:
    """Apply a relation word from the data to a measured count."""
    return RELATIONS[relation](count, threshold)
