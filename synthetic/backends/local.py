"""CPU backend over a checkpoint made by `model/`: the tiny recipe's teacher, and the engine behind `nano2 synth serve`.

Chats are rendered with the Nano 2 template (`model.tokenizer.render_chat`), so a reasoning-on prompt ends in
`<think>\\n` and the completion is `trace\\n</think>\\nanswer`, the shape vLLM returns for Nano 2. Decoding is
`model.generate.generate` on a `FastDecoder`, one sequence at a time with its own seed (sample i of a request uses
seed + i), so a request's text does not depend on what else is in the batch: reruns and resumed runs reproduce it.
Generation stops at `</s>`, at the end-of-turn token for chats, or at a stop string (cut from the text).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from nano2.errors import Nano2Error
from synthetic.backends.base import (
    BackendError,
    GenerationRequest,
    GenerationResponse,
    error_response,
    with_reasoning_switch,
)

_FINISH = {"stop_token": "stop", "stop_string": "stop", "length": "length"}


class LocalBackend:
    """Generate with a local `model/` checkpoint on CPU (or any torch device)."""

    name = "local"

    def __init__(self, checkpoint: str | Path, dtype: str = "fp32", device: str = "cpu", model_name: str | None = None):
        from model.io import load_checkpoint
        from model.tokenizer import load_tokenizer

        path = Path(checkpoint)
        if not path.is_dir():
            raise BackendError(f"local backend: checkpoint directory {path} not found")
        try:
            self.tokenizer = load_tokenizer(path)
        except Exception as exc:  # a checkpoint without tokenizer files cannot render chats
            raise BackendError(f"local backend: {path} has no usable tokenizer ({exc})") from None
        self.hf_model = load_checkpoint(path, dtype=dtype, device=device)
        self.model = model_name or path.resolve().name
        self.checkpoint = path
        self._decoder = None
        self._lock = threading.Lock()  # one model, one decode at a time (the HTTP server is threaded)
        self._eos = self.tokenizer.token_to_id("</s>")
        self._end_of_turn = self.tokenizer.token_to_id("<SPECIAL_12>")

    def prompt_text(self, request: GenerationRequest) -> str:
        """The exact text the model continues: the rendered chat (with its reasoning switch) or the raw prompt."""
        from model.tokenizer import render_chat

        if request.messages is None:
            assert request.prompt is not None
            return request.prompt
        return render_chat(with_reasoning_switch(request.messages, request.thinking), add_generation_prompt=True)

    def _decoder_for(self, length: int):
        from model.fast_decode import FastDecoder

        if self._decoder is None or self._decoder.max_len < length:
            self._decoder = FastDecoder(self.hf_model, max_batch=1, max_len=max(length, 256))
        return self._decoder

    def _one(self, request: GenerationRequest) -> GenerationResponse:
        from model.generate import SamplingParams, generate

        try:
            text = self.prompt_text(request)
        except Nano2Error as exc:
            return error_response(request, f"bad request: {exc}")
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if not ids:
            return error_response(request, "bad request: the prompt is empty")
        s = request.sampling
        chat_end = self._end_of_turn if request.messages is not None else None
        stops = tuple(t for t in (self._eos, chat_end) if t is not None)
        texts, reasons, counts = [], [], []
        for i in range(s.n):
            params = SamplingParams(
                max_new_tokens=s.max_tokens,
                temperature=s.temperature,
                top_p=s.top_p,
                seed=s.seed + i,
                stop_strings=tuple(s.stop),
                stop_token_ids=stops,
            )
            result = generate(self._decoder_for(len(ids) + s.max_tokens + 1), ids, params, tokenizer=self.tokenizer)
            out = result.text or ""
            if result.finish_reason == "stop_token":
                for token in ("</s>", "<SPECIAL_12>"):
                    out = out.removesuffix(token)
            texts.append(out)
            reasons.append(_FINISH.get(result.finish_reason, result.finish_reason))
            counts.append(len(result.token_ids))
        return GenerationResponse(
            key=request.key, texts=texts, finish_reasons=reasons, prompt_tokens=len(ids), completion_tokens=counts
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        with self._lock:
            return [self._one(r) for r in requests]

    def close(self) -> None:
        self._decoder = None
