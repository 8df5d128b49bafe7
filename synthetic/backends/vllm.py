"""vLLM's offline engine (`vllm.LLM`) on a GPU machine; vllm is imported only when this backend is built.

Chats go through `LLM.chat` (the model's own chat template), raw prompts through `LLM.generate`; every request
keeps its own `SamplingParams` (seed included), so batching does not change a request's samples. vLLM raises for a
whole batch when one prompt is bad (too long for `max_model_len`, say); the batch is then retried one request at a
time, so only the bad request records an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthetic.backends.base import (
    BackendError,
    GenerationRequest,
    GenerationResponse,
    error_response,
    with_reasoning_switch,
)


class VLLMBackend:
    """Offline batched generation with vLLM."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        dtype: str = "auto",
        seed: int = 0,
        engine_kwargs: dict[str, Any] | None = None,
    ):
        try:
            import vllm
        except ImportError:
            raise BackendError(
                "vllm backend: the vllm package is not installed (it needs a CUDA GPU machine: pip install vllm); "
                "on CPU use backend kind 'local', or 'openai' against a running server"
            ) from None
        self._vllm = vllm
        self.model = model
        kwargs: dict[str, Any] = {
            "model": model,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "dtype": dtype,
            "seed": seed,
            **(engine_kwargs or {}),
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        try:
            self.llm = vllm.LLM(**kwargs)
        except Exception as exc:  # vLLM raises many kinds of errors for a model it cannot load
            raise BackendError(f"vllm backend: cannot load {model}: {type(exc).__name__}: {exc}") from None

    def _params(self, request: GenerationRequest):
        s = request.sampling
        return self._vllm.SamplingParams(
            n=s.n,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            seed=s.seed,
            stop=list(s.stop) or None,
        )

    @staticmethod
    def _response(request: GenerationRequest, output) -> GenerationResponse:
        outs = sorted(output.outputs, key=lambda o: o.index)
        return GenerationResponse(
            key=request.key,
            texts=[o.text for o in outs],
            finish_reasons=[o.finish_reason or "stop" for o in outs],
            prompt_tokens=len(output.prompt_token_ids or []),
            completion_tokens=[len(o.token_ids) for o in outs],
        )

    def _run(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        chats = [r for r in requests if r.messages is not None]
        prompts = [r for r in requests if r.messages is None]
        done: dict[str, GenerationResponse] = {}
        if chats:
            conversations = [with_reasoning_switch(r.messages, r.thinking) for r in chats]
            outputs = self.llm.chat(conversations, [self._params(r) for r in chats], use_tqdm=False)
            done.update({r.key: self._response(r, o) for r, o in zip(chats, outputs, strict=True)})
        if prompts:
            outputs = self.llm.generate([r.prompt for r in prompts], [self._params(r) for r in prompts], use_tqdm=False)
            done.update({r.key: self._response(r, o) for r, o in zip(prompts, outputs, strict=True)})
        return [done[r.key] for r in requests]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        try:
            return self._run(requests)
        except Exception as exc:  # one bad prompt fails vLLM's whole batch: isolate it
            if len(requests) == 1:
                return [error_response(requests[0], f"{type(exc).__name__}: {exc}")]
        out = []
        for request in requests:
            try:
                out.extend(self._run([request]))
            except Exception as exc:
                out.append(error_response(request, f"{type(exc).__name__}: {exc}"))
        return out

    def close(self) -> None:
        self.llm = None
