"""Generation backends behind one interface (`synthetic.backends.base.Backend`) and the factory that builds them.

`kind`: `local` (a `model/` checkpoint on CPU), `openai` (any OpenAI-compatible HTTP server), `vllm` (the offline
engine, GPU machines only). Used by every LLM-calling component: the synthetic tasks and the eval runners.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from synthetic.backends.base import (
    Backend,
    BackendError,
    GenerationRequest,
    GenerationResponse,
    Sampling,
    with_reasoning_switch,
)

__all__ = [
    "Backend",
    "BackendConfig",
    "BackendError",
    "GenerationRequest",
    "GenerationResponse",
    "Sampling",
    "make_backend",
    "with_reasoning_switch",
]


class BackendConfig(BaseModel):
    """Which engine generates, and how to reach it."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["local", "openai", "vllm"]
    model: str = Field(description="local: checkpoint directory; openai: served model name; vllm: HF id or path")
    # openai
    base_url: str | None = Field(default=None, description="openai: e.g. http://localhost:8000/v1")
    api_key_env: str | None = Field(default=None, description="openai: environment variable holding the API key")
    use_chat: bool = True
    concurrency: int = Field(default=16, ge=1, description="openai: requests in flight at once")
    timeout_s: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=4, ge=0, description="openai: retries after a connection error, 429 or 5xx")
    backoff_s: float = Field(default=0.5, ge=0, description="openai: first backoff; doubles per retry, with jitter")
    max_backoff_s: float = Field(default=30.0, ge=0)
    extra_body: dict[str, Any] = Field(default_factory=dict, description="openai: extra JSON fields per request")
    # local
    dtype: str | None = Field(default=None, description="local: fp32 (default) or bf16; vllm: auto (default), ...")
    device: str = "cpu"
    # vllm
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int | None = None
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="vllm: more vllm.LLM arguments")


def make_backend(config: BackendConfig | dict[str, Any]) -> Backend:
    """Build the configured backend; misconfiguration raises BackendError with one clear message."""
    cfg = config if isinstance(config, BackendConfig) else BackendConfig.model_validate(config)
    if cfg.kind == "local":
        from synthetic.backends.local import LocalBackend

        return LocalBackend(cfg.model, dtype=cfg.dtype or "fp32", device=cfg.device)
    if cfg.kind == "openai":
        from synthetic.backends.openai_http import OpenAIBackend

        if not cfg.base_url:
            raise BackendError("backend kind 'openai' needs base_url (e.g. http://localhost:8000/v1)")
        return OpenAIBackend(
            cfg.base_url,
            cfg.model,
            api_key_env=cfg.api_key_env,
            use_chat=cfg.use_chat,
            concurrency=cfg.concurrency,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            backoff_s=cfg.backoff_s,
            max_backoff_s=cfg.max_backoff_s,
            extra_body=cfg.extra_body,
        )
    from synthetic.backends.vllm import VLLMBackend

    return VLLMBackend(
        cfg.model,
        tensor_parallel_size=cfg.tensor_parallel_size,
        max_model_len=cfg.max_model_len,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        dtype=cfg.dtype or "auto",
        engine_kwargs=cfg.engine_kwargs,
    )
