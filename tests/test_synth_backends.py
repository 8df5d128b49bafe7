"""Generation backends: the HTTP backend against a real `nano2 synth serve` process on a tiny checkpoint, retries and
recorded failures against servers that fail on purpose, the local CPU backend, and the vLLM import guard."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from synthetic.backends import BackendError, GenerationRequest, Sampling, make_backend
from synthetic.backends.local import LocalBackend
from synthetic.backends.openai_http import OpenAIBackend

CHAT = ({"role": "system", "content": "/no_think"}, {"role": "user", "content": "Name a river in Europe."})


def start_server(checkpoint, *extra: str) -> tuple[subprocess.Popen, str]:
    """`nano2 synth serve CKPT --port 0` in a subprocess; returns it and its base URL (from its first line)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nano2.app.cli", "synth", "serve", str(checkpoint), "--port", "0",
         *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=120)
    if not line or not line[0].startswith("serving "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line[0].split()[1]


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(tiny_checkpoint_dir):
    proc, url = start_server(tiny_checkpoint_dir, "--model-name", "tiny-teacher")
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def local(tiny_checkpoint_dir):
    backend = LocalBackend(tiny_checkpoint_dir)
    yield backend
    backend.close()


def _stats(url: str) -> dict:
    return httpx.get(url + "/stats").json()


# ----------------------------------------------------------------------------------------------- real server


def test_http_backend_against_the_real_server_matches_local_generation(server, local):
    backend = OpenAIBackend(server, "tiny-teacher", backoff_s=0.001)
    before = _stats(server).get("requests", 0)
    greedy = Sampling(max_tokens=6, temperature=0.0)
    requests = [
        GenerationRequest(key="chat", messages=CHAT, sampling=greedy),
        GenerationRequest(key="think", messages=CHAT[1:], sampling=greedy, thinking=True),
        GenerationRequest(key="raw", prompt="The Rhine flows", sampling=greedy),
    ]
    responses = backend.generate(requests)
    assert [r.key for r in responses] == ["chat", "think", "raw"]
    assert all(r.ok and r.attempts == 1 for r in responses), responses
    assert _stats(server)["requests"] - before == 3  # counted on the server side
    expected = local.generate(requests)
    assert [r.texts for r in responses] == [r.texts for r in expected]
    assert [r.finish_reasons for r in responses] == [r.finish_reasons for r in expected]
    assert responses[0].prompt_tokens == expected[0].prompt_tokens > 0
    backend.close()


def test_real_server_rejects_a_wrong_model_without_retrying(server):
    backend = OpenAIBackend(server, "some-other-model", max_retries=3, backoff_s=0.001)
    before = _stats(server).get("requests", 0)
    (response,) = backend.generate([GenerationRequest(key="k", messages=CHAT, sampling=Sampling(max_tokens=2))])
    assert not response.ok and response.error.startswith("HTTP 404") and response.attempts == 1
    assert _stats(server)["requests"] - before == 1
    bad = httpx.post(server + "/chat/completions", json={"model": "tiny-teacher", "messages": "nope"})
    assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]
    assert httpx.get(server + "/models").json()["data"][0]["id"] == "tiny-teacher"


# ----------------------------------------------------------------------------------------------- retries


class _FlakyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fail_first: int = 0, status: int = 500, fail_when: str | None = None, reasoning: bool = False):
        super().__init__(("127.0.0.1", 0), _FlakyHandler)
        self.fail_first, self.status, self.fail_when, self.reasoning = fail_first, status, fail_when, reasoning
        self.calls = 0
        self.headers_seen: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _FlakyHandler(BaseHTTPRequestHandler):
    server: _FlakyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.calls += 1
            calls = self.server.calls
            self.server.headers_seen.append(dict(self.headers))
        content = body["messages"][-1]["content"]
        failing = calls <= self.server.fail_first or (self.server.fail_when and self.server.fail_when in content)
        if failing:
            payload, status = {"error": {"message": "overloaded"}}, self.server.status
        else:
            message = {"role": "assistant", "content": f"echo: {content}"}
            if self.server.reasoning:
                message = {"role": "assistant", "content": "Paris.", "reasoning_content": "France's capital.\n"}
            payload = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 7, "completion_tokens": 3}}  # fmt: skip
            status = 200
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def flaky():
    servers = []

    def make(**kwargs) -> _FlakyServer:
        srv = _FlakyServer(**kwargs)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _ask(backend, *contents: str):
    return backend.generate(
        [GenerationRequest(key=f"k{i}", messages=({"role": "user", "content": c},)) for i, c in enumerate(contents)]
    )


def test_retries_5xx_with_backoff_then_succeeds(flaky):
    srv = flaky(fail_first=2, status=503)
    started = time.perf_counter()
    (response,) = _ask(OpenAIBackend(srv.url, "m", max_retries=4, backoff_s=0.01), "hello")
    assert response.ok and response.texts == ["echo: hello"] and response.attempts == 3
    assert srv.calls == 3
    assert response.prompt_tokens == 7 and response.completion_tokens == [3]
    assert time.perf_counter() - started < 5


def test_gives_up_and_records_the_failure(flaky):
    srv = flaky(fail_first=10**6, status=500)
    (response,) = _ask(OpenAIBackend(srv.url, "m", max_retries=2, backoff_s=0.001), "hello")
    assert not response.ok and response.texts == []
    assert response.attempts == 3 and srv.calls == 3
    assert "gave up after 3 attempts" in response.error and "HTTP 500" in response.error


def test_429_is_retried_but_400_is_not(flaky):
    srv = flaky(fail_first=1, status=429)
    (ok,) = _ask(OpenAIBackend(srv.url, "m", max_retries=2, backoff_s=0.001), "x")
    assert ok.ok and ok.attempts == 2
    srv400 = flaky(fail_first=10**6, status=400)
    (bad,) = _ask(OpenAIBackend(srv400.url, "m", max_retries=5, backoff_s=0.001), "x")
    assert bad.attempts == 1 and bad.error.startswith("HTTP 400") and srv400.calls == 1


def test_one_failing_request_does_not_fail_the_batch(flaky):
    srv = flaky(fail_when="bad", status=502)
    backend = OpenAIBackend(srv.url, "m", max_retries=1, backoff_s=0.001, concurrency=4)
    responses = _ask(backend, "a", "bad one", "c", "d")
    assert [r.key for r in responses] == ["k0", "k1", "k2", "k3"]
    assert [r.ok for r in responses] == [True, False, True, True]
    assert responses[2].texts == ["echo: c"] and responses[1].attempts == 2


def test_connection_errors_are_retried_and_recorded():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    (response,) = _ask(OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff_s=0.001), "x")
    assert not response.ok and response.attempts == 3 and "ConnectError" in response.error


def test_api_key_comes_from_the_named_environment_variable(flaky, monkeypatch):
    srv = flaky()
    monkeypatch.delenv("NANO2_TEST_KEY", raising=False)
    with pytest.raises(BackendError, match="NANO2_TEST_KEY"):
        OpenAIBackend(srv.url, "m", api_key_env="NANO2_TEST_KEY")
    monkeypatch.setenv("NANO2_TEST_KEY", "sk-test-123")
    _ask(OpenAIBackend(srv.url, "m", api_key_env="NANO2_TEST_KEY"), "x")
    assert srv.headers_seen[-1]["Authorization"] == "Bearer sk-test-123"


def test_split_reasoning_responses_are_joined_back(flaky):
    srv = flaky(reasoning=True)
    (response,) = _ask(OpenAIBackend(srv.url, "m"), "capital of France?")
    assert response.texts == ["France's capital.\n</think>\nParis."]


def test_misconfiguration_is_a_backend_error():
    with pytest.raises(BackendError, match="base_url"):
        make_backend({"kind": "openai", "model": "m"})
    with pytest.raises(BackendError, match="http"):
        OpenAIBackend("localhost:8000", "m")
    with pytest.raises(BackendError, match="not found"):
        make_backend({"kind": "local", "model": "/nonexistent/checkpoint"})


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_backend_says_vllm_is_missing():
    with pytest.raises(BackendError, match="vllm package is not installed"):
        make_backend({"kind": "vllm", "model": "Qwen/Qwen3-30B-A3B-Instruct-2507"})


# ----------------------------------------------------------------------------------------------- local backend


def test_local_backend_thinking_seeds_and_bad_requests(local):
    on = GenerationRequest(key="a", messages=CHAT[1:], thinking=True)
    off = GenerationRequest(key="b", messages=CHAT[1:], thinking=False)
    assert local.prompt_text(on).endswith("<SPECIAL_11>Assistant\n<think>\n")
    assert local.prompt_text(off).endswith("<SPECIAL_11>Assistant\n<think></think>")
    assert local.prompt_text(GenerationRequest(key="c", messages=CHAT)).endswith("<think></think>")  # chat's /no_think
    sampled = GenerationRequest(key="s", messages=CHAT, sampling=Sampling(max_tokens=6, temperature=1.0, seed=3, n=2))
    (first,) = local.generate([sampled])
    (again,) = local.generate([sampled])
    assert len(first.texts) == 2 and first.texts == again.texts  # seeded: reproducible
    assert first.texts[0] != first.texts[1]  # sample i uses seed + i
    assert first.completion_tokens == [6, 6] and first.finish_reasons == ["length", "length"]
    late_system = ({"role": "user", "content": "hi"}, {"role": "system", "content": "x"})
    (bad,) = local.generate([GenerationRequest(key="bad", messages=late_system)])
    assert not bad.ok and bad.error.startswith("bad request")


def test_serve_command_refuses_a_missing_checkpoint(cli, tmp_path):
    result = cli("synth", "serve", tmp_path / "missing", "--port", "0")
    assert result.code == 2 and "not found" in result.err
