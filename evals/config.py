"""`nano2 eval` configs: which model, which benchmarks with which prompt and sampling, and the run's limits.

Kept apart from the run so that `nano2 eval run` and `nano2 eval budget` read one YAML with one validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synthetic.backends import BackendConfig
from verify.sandbox import SandboxLimits


class SamplingConfig(BaseModel):
    """How each item is sampled. Sample i uses seed + i; `thinking` switches reasoning for chat prompts."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, description="samples per item")
    seed: int = Field(0, ge=0)
    max_tokens: int = Field(512, ge=1)
    thinking: bool | None = Field(None, description="reasoning on/off for chat prompts; null: the model's default")


class SamplingOverride(BaseModel):
    """Per-benchmark changes to the run's sampling settings (unset fields keep the run's value)."""

    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    thinking: bool | None = None

    def apply(self, base: SamplingConfig) -> SamplingConfig:
        return base.model_copy(update=self.model_dump(exclude_unset=True))


class BenchmarkConfig(BaseModel):
    """One benchmark of a run: which items, which prompt, which sampling, which metrics."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="gsm8k, math500, aime24, ..., mgsm, mmlu_stem, humaneval, mbpp, ifeval, m_ifeval")
    limit: int | None = Field(None, ge=1, description="first N items (per language for mgsm / m_ifeval)")
    ids: list[str] = Field(default_factory=list, description="only these item ids (after `limit`)")
    prompt: Literal["chat", "completion"] = Field(
        "chat", description="chat: zero-shot chat turn; completion: the base-model prompt (few-shot where defined)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="loader options: shots, languages, split, ...")
    sampling: SamplingOverride = Field(default_factory=SamplingOverride)
    pass_k: list[int] = Field(default_factory=lambda: [1], description="code benchmarks: the pass@k values reported")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        known = known_benchmarks()
        if name not in known:
            raise ValueError(f"unknown benchmark {name!r}; expected one of {', '.join(known)}")
        return name

    @field_validator("pass_k")
    @classmethod
    def _positive(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 1 for k in ks):
            raise ValueError("pass_k must list values >= 1")
        return sorted(set(ks))


class EvalConfig(BaseModel):
    """A whole evaluation run. `model`: a local checkpoint path, or a backend config (kind local/openai/vllm)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "eval"
    model: BackendConfig
    label: str | None = Field(None, description="name of the model in summaries (default: the checkpoint's name)")
    output_dir: str = Field("runs/evals", description="the run goes to OUTPUT_DIR/LABEL (or exactly to --output)")
    data_dir: str | None = Field(None, description="shared data dir (default: $NANO2_SHARED_DATA or ../shared/data)")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    benchmarks: list[BenchmarkConfig] = Field(min_length=1)
    batch_size: int = Field(16, ge=1, description="requests sent to the backend at once (and written together)")
    sandbox: SandboxLimits = Field(default_factory=SandboxLimits)
    sandbox_workers: int = Field(2, ge=1)
    bootstrap_resamples: int = Field(2000, ge=100)
    torch_threads: int | None = Field(
        None, ge=1, description="CPU threads for local generation (1 is fastest for tiny models on a busy machine)"
    )
    budget: BudgetCurveConfig | None = Field(None, description="`nano2 eval budget`: the thinking-budget curve")

    @field_validator("model", mode="before")
    @classmethod
    def _checkpoint_path(cls, value: Any) -> Any:
        return {"kind": "local", "model": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _unique_and_consistent(self) -> EvalConfig:
        names = [b.name for b in self.benchmarks]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"benchmark(s) listed twice: {', '.join(duplicated)}")
        for spec in self.benchmarks:
            n = spec.sampling.apply(self.sampling).n
            if max(spec.pass_k) > n:
                raise ValueError(f"{spec.name}: pass@{max(spec.pass_k)} needs n >= {max(spec.pass_k)} samples, got {n}")
        if self.budget is not None:
            unknown = [b for b in self.budget.benchmarks if b not in names]
            if unknown:
                raise ValueError(f"budget.benchmarks {unknown} are not among the run's benchmarks {names}")
        return self


class BudgetCurveConfig(BaseModel):
    """Accuracy vs thinking budget (Nano 2's rule: `</think>` after the next newline once the budget is reached)."""

    model_config = ConfigDict(extra="forbid")
    budgets: list[int] = Field(min_length=1, description="thinking-token budgets, e.g. [128, 256, 512, 1024]")
    grace: int = Field(500, ge=0, description="tokens past the budget before the trace is cut without a newline")
    answer_tokens: int = Field(256, ge=1, description="tokens allowed after the trace closes")
    benchmarks: list[str] = Field(default_factory=list, description="which of the run's benchmarks (default: all)")

    @field_validator("budgets")
    @classmethod
    def _sorted(cls, budgets: list[int]) -> list[int]:
        if any(b < 0 for b in budgets):
            raise ValueError("budgets must be >= 0")
        return sorted(set(budgets))


EvalConfig.model_rebuild()


def load_eval_config(path: str | Path) -> EvalConfig:
    from nano2.config import load_yaml_model

    return load_yaml_model(path, EvalConfig)


def known_benchmarks() -> list[str]:
    from evals.benchmarks import BENCHMARKS

    return [*BENCHMARKS, "ifeval", "m_ifeval"]
