"""Declared phase mixtures: the YAML a user edits, validated strictly (extra keys are errors).

A spec says how many tokens to train on, at which sequence length and global batch, which sources exist (with
their token counts declared or read from a manifest), and for each phase until which fraction of training it runs
and what share of its sequences each source gets. `compile_plan` turns it into exact integers.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nano2.config import load_yaml_model
from nano2.units import TokenCount

WEIGHT_TOLERANCE = 1e-9


class SourceSpec(BaseModel):
    """One data source: exactly one of `path` (tokens from the manifest there) or `tokens` (declared)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "0.55" or true is not a weight
    path: str | None = Field(default=None, description="artifact directory (or key=value partition of one)")
    tokens: TokenCount | None = Field(default=None, description="declared token count when no data is local")
    max_epochs: float = Field(
        default=1.0, gt=0, allow_inf_nan=False, description="how many times the source may be read in total"
    )
    optional: bool = Field(
        default=False,
        description="small runs: with no tokens (or no artifact) at `path` the source is left out of every phase and "
        "the other weights of each phase share its sequences; otherwise a missing source is an error",
    )

    @model_validator(mode="after")
    def _one_origin(self) -> SourceSpec:
        if (self.path is None) == (self.tokens is None):
            raise ValueError("give exactly one of `path` (read tokens from its manifest) or `tokens` (declared)")
        return self


class PhaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "0.55" or true is not a weight
    name: str = Field(min_length=1)
    until: float = Field(gt=0, le=1, allow_inf_nan=False, description="fraction of training at which this phase ends")
    weights: dict[str, float] = Field(min_length=1, description="share of the phase's sequences per source")

    @field_validator("weights")
    @classmethod
    def _weights_are_a_distribution(cls, weights: dict[str, float]) -> dict[str, float]:
        not_finite = [k for k, v in weights.items() if not math.isfinite(v)]
        if not_finite:
            raise ValueError(f"weights must be finite numbers; {', '.join(not_finite)} is not")
        negative = [k for k, v in weights.items() if v < 0]
        if negative:
            raise ValueError(f"weights must be >= 0; negative for {', '.join(negative)}")
        total = float(sum(Decimal(repr(float(v))) for v in weights.values()))
        if abs(total - 1.0) > WEIGHT_TOLERANCE:
            raise ValueError(f"weights sum to {total:.12g}, expected 1 (within {WEIGHT_TOLERANCE:g})")
        return weights


class MixtureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "0.55" or true is not a weight
    name: str = Field(min_length=1)
    seq_len: int = Field(gt=0)
    global_batch_size: int = Field(gt=0, description="sequences per optimizer step")
    total_tokens: TokenCount
    sources: dict[str, SourceSpec] = Field(min_length=1)
    phases: list[PhaseSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _phases_fit_sources(self) -> MixtureSpec:
        previous = 0.0
        names: set[str] = set()
        for i, phase in enumerate(self.phases):
            if phase.name in names:
                raise ValueError(f"phases[{i}].name: duplicate phase name {phase.name!r}")
            names.add(phase.name)
            if phase.until <= previous:
                raise ValueError(
                    f"phases[{i}].until: {phase.until} must be greater than the previous phase's {previous}"
                )
            previous = phase.until
            unknown = sorted(set(phase.weights) - set(self.sources))
            if unknown:
                raise ValueError(
                    f"phases[{i}].weights.{unknown[0]}: unknown source {unknown[0]!r}; "
                    f"declared sources: {', '.join(sorted(self.sources))}"
                )
        if self.phases[-1].until != 1.0:
            raise ValueError(f"phases[{len(self.phases) - 1}].until: the last phase must end at 1.0")
        tokens_per_step = self.seq_len * self.global_batch_size
        if self.total_tokens < tokens_per_step:
            raise ValueError(
                f"total_tokens: {self.total_tokens} is less than one global batch "
                f"({self.seq_len} x {self.global_batch_size} = {tokens_per_step} tokens)"
            )
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.global_batch_size


def load_spec(path: str | Path) -> MixtureSpec:
    """Load and validate a mixture spec; errors name the file and the field."""
    return load_yaml_model(path, MixtureSpec)
