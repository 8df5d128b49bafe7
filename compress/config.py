"""The compression run config (compress/configs/*.yaml): parent, calibration, search space, budget, distillation.

One file describes a whole Minitron run, so `nano2 compress search` and `nano2 compress distill` read the same
facts: which parent, which calibration data, which shapes are allowed, which memory budget they must fit, and how
the winner is distilled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from compress.importance import ImportanceSettings
from nano2.config import load_yaml_model
from nano2.units import TokenCount


class Grid(BaseModel):
    """An inclusive range of widths: min, min + step, ..., and max itself even when the step overshoots it."""

    model_config = ConfigDict(extra="forbid")
    min: int = Field(gt=0)
    max: int = Field(gt=0)
    step: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Grid:
        if self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}")
        return self

    def values(self) -> list[int]:
        out = list(range(self.min, self.max + 1, self.step))
        return out if out[-1] == self.max else [*out, self.max]


def _values(axis: list[int] | Grid) -> list[int]:
    return sorted(set(axis.values() if isinstance(axis, Grid) else axis))


class Budget(BaseModel):
    """The serving constraint: memory at `context` tokens and `batch` sequences on `gpu` (model/size.py)."""

    model_config = ConfigDict(extra="forbid")
    gpu: str = Field("a10g", description="a10g (19.66 GiB, the paper's rule), h100, h200 or custom:GIB")
    context: int = Field(131072, gt=0)
    batch: int = Field(1, gt=0)
    dtype: str = "bf16"


class ShapePoint(BaseModel):
    """One point of the search space."""

    model_config = ConfigDict(extra="forbid")
    depth: int = Field(gt=0)
    hidden: int = Field(gt=0)
    ffn: int = Field(gt=0)
    mamba_heads: int = Field(gt=0)


class Scoring(BaseModel):
    """How candidates are ranked when the search trains: a proxy (pruned-only loss) or a short distillation."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["proxy", "distill"] = "proxy"
    samples: int = Field(32, gt=0, description="held-out sequences the candidates are scored on")
    seq_len: int = Field(512, gt=1)
    batch_size: int = Field(8, gt=0)
    seed: int = Field(1, description="differs from the calibration seed so scoring uses other windows")
    max_width_candidates: int = Field(24, gt=0, description="feasible widths proxy-scored (most parameters first)")
    top_k: int = Field(3, gt=0, description="widths distilled in the second stage (paper: 3)")
    depth_distill_tokens: TokenCount = Field(0, description="short distillation of each depth (paper: 6B)")
    distill_tokens: TokenCount = Field(0, description="short distillation of each top-k width (paper: 19B)")


class SearchSpace(BaseModel):
    """The paper's two-stage search: depth first, then widths, under a memory budget and a parameter band."""

    model_config = ConfigDict(extra="forbid")
    depth: list[int] = Field(min_length=1)
    hidden: list[int] | Grid
    ffn: list[int] | Grid
    mamba_heads: list[int] | Grid
    target_params: TokenCount = Field(description="parameter target, e.g. 8.9B")
    params_tolerance: float = Field(0.05, gt=0, lt=1, description="band: target x (1 +- tolerance)")
    budget: Budget = Field(default_factory=Budget)
    drop_layers: dict[int, list[int]] = Field(
        default_factory=dict,
        description="layers each depth drops when no measured depth ranking is available (e.g. with --no-train)",
    )
    reference: ShapePoint | None = Field(None, description="a shape shown with its grid neighbours (the paper's 9B)")
    scoring: Scoring = Field(default_factory=Scoring)

    @field_validator("depth")
    @classmethod
    def _positive(cls, depths: list[int]) -> list[int]:
        if any(d <= 0 for d in depths):
            raise ValueError("depths must be positive")
        return sorted(set(depths))

    def axes(self) -> dict[str, list[int]]:
        return {
            "depth": self.depth,
            "hidden": _values(self.hidden),
            "ffn": _values(self.ffn),
            "mamba_heads": _values(self.mamba_heads),
        }


class Calibration(ImportanceSettings):
    """Where calibration tokens come from, plus the importance settings."""

    source: str | None = Field(None, description="token file (.safetensors/.npy), shard directory or mixture spec")
    data_root: str = Field(".", description="tokenized data root a spec's source paths resolve under")
    sources: dict[str, str] = Field(
        default_factory=dict, description="token directory (under data_root) of a spec's declared sources"
    )

    def load(self, vocab_size: int, samples: int | None = None, seq_len: int | None = None, seed: int | None = None):
        """Calibration tokens (the importance settings unless other sizes are asked for, e.g. held-out scoring)."""
        from compress.calibration import load_calibration
        from nano2.errors import ConfigError

        if self.source is None:
            raise ConfigError(None, "calibration.source", "no calibration data configured (spec, shards or token file)")
        return load_calibration(
            self.source,
            samples or self.samples,
            seq_len or self.seq_len,
            self.seed if seed is None else seed,
            self.data_root,
            vocab_size,
            self.sources,
        )


class Distillation(BaseModel):
    """Logit distillation of the child from the parent inside train/'s loop."""

    model_config = ConfigDict(extra="forbid")
    student: str | None = Field(None, description="pruned child checkpoint; default: the search winner")
    spec: str | None = Field(None, description="mixture spec of the distillation data")
    data_root: str = "."
    temperature: float = Field(1.0, gt=0)
    kl_weight: float = Field(1.0, ge=0)
    lm_weight: float = Field(0.0, ge=0, description="weight of the usual next-token loss added to the KL")
    teacher_dtype: Literal["fp32", "bf16"] = Field("fp32", description="dtype the frozen teacher is loaded in")
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of train/'s run config")

    @model_validator(mode="after")
    def _some_loss(self) -> Distillation:
        if self.kl_weight == 0 and self.lm_weight == 0:
            raise ValueError("kl_weight and lm_weight are both 0: nothing to train")
        return self


class CompressConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    parent: str = Field(description="a named config (model/configs.py) or a parent checkpoint directory")
    architecture: str | None = Field(
        None, description="the parent's named config, for --no-train before the parent checkpoint exists"
    )
    output_dir: str = Field(description="where importance, search tables, the child and distillation go")
    calibration: Calibration = Field(default_factory=Calibration)
    search: SearchSpace
    distill: Distillation = Field(default_factory=Distillation)


def load_compress_config(path: str | Path) -> CompressConfig:
    return load_yaml_model(path, CompressConfig)


def parent_config(cfg: CompressConfig, config_path: str | Path | None = None):
    """The parent's HybridConfig: from its checkpoint when there is one, else from `architecture` or `parent` as a
    named config. A checkpoint that disagrees with the declared architecture is an error."""
    from model.configs import get_config
    from model.io import load_config
    from nano2.errors import ConfigError, Nano2Error

    is_checkpoint = (Path(cfg.parent) / "config.json").exists()
    try:
        declared = get_config(cfg.architecture) if cfg.architecture else None
        found = load_config(cfg.parent) if is_checkpoint or declared is None else None
    except Nano2Error as exc:
        raise ConfigError(config_path, "parent", str(exc)) from None
    if found is None:
        return declared
    if declared is not None:
        fields = ("pattern", "hidden_size", "intermediate_size", "mamba_num_heads", "n_groups", "vocab_size")
        differ = [f for f in fields if getattr(found, f) != getattr(declared, f)]
        if differ:
            raise ConfigError(
                config_path, "architecture", f"{cfg.parent} is not a {cfg.architecture}: {', '.join(differ)} differ"
            )
    return found
