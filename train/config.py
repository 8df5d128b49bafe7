"""The pretraining config (`nano2 train pretrain CONFIG`): YAML validated strictly, errors naming file and field.

A config says which model to train (a named architecture at random init, or a checkpoint to continue), which plan
to read (a compiled plan JSON, or a mixture spec compiled at start against the tokenized data root), and how to
optimise (AdamW, a WSD / cosine / constant schedule, clipping, precision, parallelism, checkpoints).
The sequence length and the global batch come from the plan: the trainer reads exactly what mixtures/ planned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nano2.config import load_yaml_model
from nano2.units import TokenCount
from train.schedule import DecayStyle, LRSchedule, ScheduleKind


class ModelSection(BaseModel):
    """Exactly one of `name` (a named architecture, random init with `seed`) or `init_from` (a checkpoint)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, description="named config, e.g. tiny-12b (see `nano2 model configs`)")
    init_from: Path | None = Field(default=None, description="checkpoint directory to continue from")
    seed: int = Field(default=0, description="initialisation seed for `name`")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        if (self.name is None) == (self.init_from is None):
            raise ValueError("give exactly one of `name` (random init) or `init_from` (a checkpoint directory)")
        return self


class DataSection(BaseModel):
    """Exactly one of `plan` (compiled JSON) or `spec` (compiled at start under `data_root`)."""

    model_config = ConfigDict(extra="forbid")
    plan: Path | None = Field(default=None, description="plan JSON written by `nano2 mix plan -o`")
    spec: Path | None = Field(default=None, description="mixture spec YAML, compiled against data_root")
    data_root: Path = Field(default=Path("."), description="tokenized data root that source paths resolve under")
    total_tokens: TokenCount | None = Field(default=None, description="replace the spec's total_tokens (spec only)")
    sources: dict[str, str] = Field(
        default_factory=dict, description="token directory per source (under data_root), for declared sources"
    )
    seed: int = Field(default=1234, description="document order of every source's epochs")
    shuffle: bool = Field(default=True, description="shuffle documents within each epoch")

    @model_validator(mode="after")
    def _one_plan(self) -> DataSection:
        if (self.plan is None) == (self.spec is None):
            raise ValueError("give exactly one of `plan` (a compiled plan JSON) or `spec` (a mixture spec)")
        if self.total_tokens is not None and self.spec is None:
            raise ValueError("total_tokens replaces a spec's budget; with a compiled plan, compile a new plan")
        return self


class ScheduleSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: ScheduleKind = "wsd"
    lr: float = Field(gt=0, description="peak (stable) learning rate")
    min_lr: float = Field(default=0.0, ge=0, description="rate at the end of the decay")
    warmup_steps: int | None = Field(default=None, ge=0)
    warmup_tokens: TokenCount | None = None
    warmup_fraction: float | None = Field(default=None, ge=0, le=1)
    decay_steps: int | None = Field(default=None, ge=0, description="WSD: length of the final decay")
    decay_tokens: TokenCount | None = None
    decay_fraction: float | None = Field(default=None, ge=0, le=1)
    decay_style: DecayStyle = "linear"

    @model_validator(mode="after")
    def _at_most_one_each(self) -> ScheduleSection:
        for what in ("warmup", "decay"):
            given = [f"{what}_{k}" for k in ("steps", "tokens", "fraction") if getattr(self, f"{what}_{k}") is not None]
            if len(given) > 1:
                raise ValueError(f"give at most one of {', '.join(given)}")
        decay_given = any(getattr(self, f"decay_{k}") is not None for k in ("steps", "tokens", "fraction"))
        if decay_given and self.kind != "wsd":
            raise ValueError(f"decay_* applies to kind wsd only (kind is {self.kind}; cosine decays over the run)")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} is above lr {self.lr}")
        return self

    def _steps(self, what: str, total_steps: int, tokens_per_step: int) -> int:
        steps, tokens, fraction = (getattr(self, f"{what}_{k}") for k in ("steps", "tokens", "fraction"))
        if steps is not None:
            return steps
        if tokens is not None:
            return round(tokens / tokens_per_step)
        if fraction is not None:
            return round(fraction * total_steps)
        return 0

    def build(self, total_steps: int, tokens_per_step: int) -> LRSchedule:
        return LRSchedule(
            kind=self.kind,
            peak=self.lr,
            min_lr=self.min_lr if self.kind != "constant" else self.lr,
            total_steps=total_steps,
            warmup_steps=self._steps("warmup", total_steps, tokens_per_step),
            decay_steps=self._steps("decay", total_steps, tokens_per_step) if self.kind == "wsd" else 0,
            decay_style=self.decay_style,
        )


class OptimizerSection(BaseModel):
    """AdamW; weight decay applies to matrices (ndim >= 2), not to norms, biases or the Mamba A/D/dt vectors."""

    model_config = ConfigDict(extra="forbid")
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float | None = Field(default=1.0, gt=0, description="max global grad norm; null disables clipping")


class FP8Section(BaseModel):
    """FP8 matmuls through torchao on GPU; the first and last blocks (and lm_head) stay in bf16."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    recipe: Literal["tensorwise", "rowwise"] = "tensorwise"
    bf16_first_layers: int = Field(default=1, ge=0, description="leading blocks kept out of FP8")
    bf16_last_layers: int = Field(default=1, ge=0, description="trailing blocks kept out of FP8 (lm_head always)")


class PrecisionSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bf16: bool = Field(default=False, description="bf16 autocast (weights and optimizer state stay fp32)")
    fp8: FP8Section = Field(default_factory=FP8Section)


class ParallelSection(BaseModel):
    """Used when launched with torchrun (WORLD_SIZE > 1)."""

    model_config = ConfigDict(extra="forbid")
    strategy: Literal["ddp", "fsdp2"] = "ddp"
    backend: Literal["auto", "nccl", "gloo"] = Field(default="auto", description="auto: nccl on GPU, gloo on CPU")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    output_dir: Path | None = Field(default=None, description="run directory (the CLI's -o overrides it)")
    model: ModelSection | None = Field(default=None, description="omit only when the caller passes a model")
    tokenizer: Path | None = Field(default=None, description="tokenizer dir copied into checkpoints")
    data: DataSection
    micro_batch_size: int = Field(gt=0, description="sequences per forward pass per rank")
    schedule: ScheduleSection
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    precision: PrecisionSection = Field(default_factory=PrecisionSection)
    parallel: ParallelSection = Field(default_factory=ParallelSection)
    activation_checkpointing: bool = False
    checkpoint_every: int = Field(default=0, ge=0, description="steps between checkpoints (0: only the final one)")
    keep_checkpoints: int = Field(default=2, ge=1, description="how many intermediate checkpoints to keep")
    log_every: int = Field(default=1, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = Field(default=0, description="torch RNG seed of the run")
    plot: bool = True


def load_train_config(path: str | Path) -> TrainConfig:
    """Load a pretraining config; every error names the file and the field."""
    return load_yaml_model(path, TrainConfig)
