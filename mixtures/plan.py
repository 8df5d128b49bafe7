"""The compiled plan: exact integers that train/ reads and exports are made from.

`tokens` is always `sequences x seq_len`, so every sum in a plan is an exact integer identity:
sum(source tokens) == phase tokens == phase steps x global batch x seq_len.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from nano2.config import describe_validation_error
from nano2.errors import ConfigError

PLAN_FORMAT_VERSION = 1


class SourceAllocation(BaseModel):
    """What one source contributes to one phase."""

    model_config = ConfigDict(extra="forbid")
    name: str
    weight: float  # as declared in the spec
    share: float  # sequences / phase sequences: the exact realised share
    sequences: int
    tokens: int
    epochs: float  # cumulative epochs of this source at the end of this phase


class PhasePlan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    until: float
    start_step: int
    end_step: int  # exclusive
    steps: int
    sequences: int
    tokens: int
    sources: list[SourceAllocation]


class SourceSummary(BaseModel):
    """A source over the whole plan: what is available and how much of it the plan reads."""

    model_config = ConfigDict(extra="forbid")
    name: str
    origin: str  # "declared" or the path whose manifest gave the count
    manifest_id: str | None = None
    available_tokens: int
    max_epochs: float
    planned_tokens: int
    epochs: float


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: int = PLAN_FORMAT_VERSION
    name: str
    spec_hash: str
    seq_len: int
    global_batch_size: int
    tokens_per_step: int
    requested_tokens: int
    total_steps: int
    total_tokens: int
    sources: list[SourceSummary]
    phases: list[PhasePlan]

    def phase(self, name: str) -> PhasePlan:
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)

    def phase_at_step(self, step: int) -> PhasePlan:
        """The phase that owns optimizer step `step` (0-based); what a trainer asks to switch phases."""
        for phase in self.phases:
            if phase.start_step <= step < phase.end_step:
                return phase
        raise IndexError(f"step {step} is outside the plan (0..{self.total_steps - 1})")

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def read_plan(path: str | Path) -> Plan:
    """Read a plan JSON written by `nano2 mix plan -o`; errors name the file and field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, None, "plan file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"line {exc.lineno}", f"malformed JSON: {exc.msg}") from None
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        field, message = describe_validation_error(exc, Plan)[0]
        raise ConfigError(path, field, message) from None
