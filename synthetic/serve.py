"""A small OpenAI-compatible HTTP server over a local checkpoint (`nano2 synth serve CKPT`).

Why: the HTTP backend is tested against a real server process, and a tiny teacher can be shared by several
clients (synthesis and evals) without loading it twice. Stdlib only (`http.server.ThreadingHTTPServer`); the
backend serialises generation, so concurrent clients queue.

Endpoints: `POST /v1/chat/completions`, `POST /v1/completions` (OpenAI request and response shapes: messages or
prompt, max_tokens / max_completion_tokens, temperature, top_p, seed, stop, n, and vLLM's
`chat_template_kwargs.enable_thinking`), `GET /v1/models`, `GET /health`, and `GET /v1/stats`, the server-side
request counters (tests use them to prove that a resumed run re-sends nothing).
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from synthetic.backends.base import Backend, GenerationRequest, GenerationResponse, Sampling


class RequestError(ValueError):
    """A request the server refuses with HTTP 400 (or 404 for an unknown model)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _sampling(body: dict[str, Any]) -> Sampling:
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 256
    temperature, top_p = body.get("temperature"), body.get("top_p")  # OpenAI defaults: 1 and 1
    try:
        sampling = Sampling(
            max_tokens=int(max_tokens),
            temperature=1.0 if temperature is None else float(temperature),
            top_p=1.0 if top_p is None else float(top_p),
            seed=int(body.get("seed") or 0),
            stop=tuple(str(s) for s in stop),
            n=int(body.get("n") or 1),
        )
    except (TypeError, ValueError) as exc:
        raise RequestError(f"bad sampling parameters: {exc}") from None
    if sampling.max_tokens < 1 or sampling.n < 1 or sampling.temperature < 0 or not 0 < sampling.top_p <= 1:
        raise RequestError("bad sampling parameters: need max_tokens >= 1, n >= 1, temperature >= 0, 0 < top_p <= 1")
    return sampling


def build_request(body: dict[str, Any], chat: bool, key: str) -> GenerationRequest:
    """An OpenAI request body as our GenerationRequest (400 for anything malformed)."""
    sampling = _sampling(body)
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("'messages' must be a non-empty list")
        clean = []
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("content"), str) or not isinstance(m.get("role"), str):
                raise RequestError("every message needs a string 'role' and a string 'content'")
            clean.append({"role": m["role"], "content": m["content"]})
        kwargs = body.get("chat_template_kwargs") or {}
        thinking = kwargs.get("enable_thinking") if isinstance(kwargs, dict) else None
        return GenerationRequest(key=key, messages=tuple(clean), sampling=sampling, thinking=thinking)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError("'prompt' must be a string")
    return GenerationRequest(key=key, prompt=prompt, sampling=sampling)


def render_response(response: GenerationResponse, model: str, chat: bool) -> dict[str, Any]:
    choices = []
    for i, (text, reason) in enumerate(zip(response.texts, response.finish_reasons, strict=True)):
        if chat:
            choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason})
        else:
            choices.append({"index": i, "text": text, "finish_reason": reason})
    completion = sum(response.completion_tokens)
    return {
        "id": response.key,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": response.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": response.prompt_tokens + completion,
        },
    }


class GenerationServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], backend: Backend, model_name: str):
        super().__init__(address, _Handler)
        self.backend = backend
        self.model_name = model_name
        self.counts: Counter[str] = Counter()
        self._ids = itertools.count()
        self._count_lock = threading.Lock()

    def count(self, what: str) -> int:
        with self._count_lock:
            self.counts[what] += 1
            return next(self._ids)


class _Handler(BaseHTTPRequestHandler):
    server: GenerationServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request is noise in tests
        return

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send_json(status, {"error": {"message": message, "type": kind, "code": status}})

    def do_GET(self) -> None:
        if self.path in ("/health", "/v1/health"):
            self._send_json(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model"}]})
        elif self.path == "/v1/stats":
            self._send_json(200, dict(self.server.counts))
        else:
            self._error(404, f"unknown path {self.path}")

    def do_POST(self) -> None:
        routes = {"/v1/chat/completions": True, "/v1/completions": False}
        if self.path not in routes:
            self._error(404, f"unknown path {self.path}")
            return
        chat = routes[self.path]
        number = self.server.count("requests")
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            model = body.get("model")
            if model and model != self.server.model_name:
                raise RequestError(f"model {model!r} is not served here (serving {self.server.model_name!r})", 404)
            request = build_request(body, chat, key=f"req-{number}")
        except (RequestError, json.JSONDecodeError, ValueError) as exc:
            self.server.count("rejected")
            self._error(getattr(exc, "status", 400), str(exc))
            return
        self.server.count("chat" if chat else "completions")
        (response,) = self.server.backend.generate([request])
        if response.error is not None:
            self.server.count("errors")
            self._error(400 if response.error.startswith("bad request") else 500, response.error)
            return
        self._send_json(200, render_response(response, self.server.model_name, chat))


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None) -> None:
    """Serve until interrupted; prints `serving http://HOST:PORT/v1 model NAME` once it accepts connections."""
    server = GenerationServer((host, port), backend, model_name or backend.model)
    bound_host, bound_port = server.server_address[:2]
    print(f"serving http://{bound_host}:{bound_port}/v1 model {server.model_name}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        backend.close()
        sys.stdout.flush()
