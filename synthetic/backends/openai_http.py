"""Any OpenAI-compatible endpoint: `vllm serve`, `transformers serve`, `nano2 synth serve`, hosted APIs.

Chats go to `{base_url}/chat/completions`, raw prompts to `{base_url}/completions`. The API key is read from the
environment variable named in the config (never from the config itself). Requests of a batch run concurrently on
a thread pool. Connection errors, timeouts, 429 and 5xx answers are retried with exponential backoff and full
jitter; after the last attempt (or at once for other 4xx answers) the request's response records the error and the
attempts made, and the batch goes on: one bad request never fails the others.

Servers that split reasoning from the answer (vLLM's reasoning parsers put it in `reasoning_content`) are put back
together as `trace\\n</think>\\nanswer`, the shape the Nano 2 template produces, so the task parsers see one format.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nano2.contracts.chat import THINK_CLOSE
from synthetic.backends.base import (
    BackendError,
    GenerationRequest,
    GenerationResponse,
    error_response,
    with_reasoning_switch,
)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIBackend:
    """Client of an OpenAI-compatible HTTP server (httpx, thread-pooled, retried)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        use_chat: bool = True,
        concurrency: int = 16,
        timeout_s: float = 600.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        extra_body: dict[str, Any] | None = None,
    ):
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise BackendError(f"openai backend: base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise BackendError("openai backend: a model name is required (the server's served model name)")
        headers = {"Content-Type": "application/json"}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise BackendError(f"openai backend: environment variable {api_key_env} (the API key) is not set")
            headers["Authorization"] = f"Bearer {key}"
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.use_chat = use_chat
        self.concurrency = max(1, concurrency)
        self.max_retries = max(0, max_retries)
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.extra_body = dict(extra_body or {})
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 30.0)),
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )
        self._rng = random.Random()

    # ------------------------------------------------------------------------------------------- payloads
    def _payload(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
            "n": s.n,
            **self.extra_body,
        }
        if s.stop:
            body["stop"] = list(s.stop)
        if request.messages is not None and self.use_chat:
            body["messages"] = with_reasoning_switch(request.messages, request.thinking)
            return "/chat/completions", body
        if request.messages is not None:
            raise BackendError("openai backend: chat requests need use_chat: true (no chat template client-side)")
        body["prompt"] = request.prompt
        return "/completions", body

    @staticmethod
    def _parse(request: GenerationRequest, data: dict[str, Any], attempts: int) -> GenerationResponse:
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if not choices:
            return error_response(request, "malformed response: no choices", attempts)
        texts, reasons = [], []
        for choice in choices:
            if "message" in choice:
                message = choice.get("message") or {}
                content = message.get("content") or ""
                reasoning = message.get("reasoning_content") or message.get("reasoning")
                texts.append(f"{reasoning.strip()}\n{THINK_CLOSE}\n{content.lstrip()}" if reasoning else content)
            else:
                texts.append(choice.get("text") or "")
            reasons.append(choice.get("finish_reason") or "stop")
        usage = data.get("usage") or {}
        completion = usage.get("completion_tokens")
        per_choice = [int(completion) // len(texts)] * len(texts) if isinstance(completion, int) else []
        return GenerationResponse(
            key=request.key,
            texts=texts,
            finish_reasons=reasons,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=per_choice,
            attempts=attempts,
        )

    # ------------------------------------------------------------------------------------------- sending
    def _sleep_before_retry(self, attempt: int) -> None:
        """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        time.sleep(self._rng.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt)))

    def _send(self, request: GenerationRequest) -> GenerationResponse:
        import httpx

        try:
            path, body = self._payload(request)
        except BackendError as exc:
            return error_response(request, str(exc))
        url = self.base_url + path
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep_before_retry(attempt - 1)
            try:
                reply = self._client.post(url, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if reply.status_code == 200:
                try:
                    return self._parse(request, reply.json(), attempt + 1)
                except ValueError as exc:
                    return error_response(request, f"malformed JSON response: {exc}", attempt + 1)
            last_error = f"HTTP {reply.status_code}: {reply.text[:300]}"
            if reply.status_code not in RETRY_STATUS:
                return error_response(request, last_error, attempt + 1)
        attempts = self.max_retries + 1
        return error_response(request, f"gave up after {attempts} attempts: {last_error}", attempts)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        if len(requests) <= 1 or self.concurrency == 1:
            return [self._send(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._send, requests))

    def close(self) -> None:
        self._client.close()
