"""The one interface every generation backend implements (vLLM, OpenAI-compatible HTTP, local CPU checkpoint).

A backend takes a batch of `GenerationRequest`s and returns one `GenerationResponse` per request, in order. A
request is either a chat (`messages`) or a raw prompt (`prompt`); the backend applies its chat template. Failures
of one request are reported in its response (`error`), never raised for the whole batch, so a caller can count,
retry or record them; only misconfiguration (no model, bad URL) raises `BackendError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from nano2.errors import Nano2Error


class BackendError(Nano2Error):
    """A backend cannot be used at all (missing package, unreachable server, bad model path)."""


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters shared by all backends (vLLM / OpenAI names)."""

    max_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    n: int = 1  # samples per request; sample i uses seed + i

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stop"] = list(self.stop)
        return out


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt. `key` is the caller's cache key (unique in a batch); it is echoed in the response."""

    key: str
    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    thinking: bool | None = None  # None: the chat's own /think or /no_think decides

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise Nano2Error(f"request {self.key}: give exactly one of messages or prompt")


@dataclass
class GenerationResponse:
    key: str
    texts: list[str]  # n completions (empty when error is set)
    finish_reasons: list[str] = field(default_factory=list)  # "stop", "length", ...
    prompt_tokens: int = 0
    completion_tokens: list[int] = field(default_factory=list)
    error: str | None = None  # set when this request failed after the backend's own retries
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class Backend(Protocol):
    """`name` identifies the engine, `model` the weights (both go into cache keys and records)."""

    name: str
    model: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]: ...

    def close(self) -> None: ...


def with_reasoning_switch(messages: Sequence[dict[str, str]], thinking: bool | None) -> list[dict[str, str]]:
    """The conversation with the reasoning mode a request asks for, written the Nano 2 way.

    `thinking=None` keeps the conversation's own `/think` / `/no_think`. Otherwise, when the conversation does not
    already select that mode, the switch is appended to the last user message: the last switch wins in the Nano 2
    template, and Qwen3-style servers read the same soft switches.
    """
    from nano2.contracts.chat import NO_THINK_SWITCH, THINK_SWITCH, reasoning_mode

    out = [dict(m) for m in messages]
    if thinking is None or reasoning_mode(out) == thinking:
        return out
    switch = THINK_SWITCH if thinking else NO_THINK_SWITCH
    last_user = max((i for i, m in enumerate(out) if m["role"] == "user"), default=None)
    if last_user is None:
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n{switch}".strip()
        else:
            out.insert(0, {"role": "system", "content": switch})
    else:
        out[last_user]["content"] = f"{out[last_user]['content']}\n{switch}"
    return out


def error_response(request: GenerationRequest, error: str, attempts: int = 1) -> GenerationResponse:
    """The response of a request that failed: no texts, the reason recorded."""
    return GenerationResponse(key=request.key, texts=[], error=error, attempts=attempts)
