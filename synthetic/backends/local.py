"""CPU backend over a local checkpoint: the tiny recipe's teacher, and the engine behind `nano2 synth serve`.

Two kinds of checkpoint directory load here. Ours (`model/`, config.json `model_type: nemotron_h`) is described
below. Any other Hugging Face causal LM (`AutoModelForCausalLM`, e.g. a local Llama/Qwen instruct checkpoint) is
run by `HFCausalLM` with its own tokenizer and chat template (`apply_chat_template`): greedy requests are decoded
together in left-padded batches; sampled ones one sequence at a time, each with its own seed (sample i of a
request uses seed + i), so a sampled text does not depend on the batch it came in.

For our checkpoints:

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

    def __new__(cls, checkpoint: str | Path, *args, **kwargs):
        """Our checkpoints get this class; any other Hugging Face causal LM gets `HFCausalLM`."""
        path = Path(checkpoint)
        if cls is LocalBackend and path.is_dir() and checkpoint_model_type(path) not in (None, "nemotron_h"):
            return HFCausalLM(path, *args, **kwargs)
        return super().__new__(cls)

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


def checkpoint_model_type(path: Path) -> str | None:
    """config.json's `model_type` of a checkpoint directory (None when it has no readable config)."""
    import json

    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class HFCausalLM:
    """Generate with any local `AutoModelForCausalLM` checkpoint, rendering chats with its own chat template."""

    name = "local-hf"

    def __init__(self, checkpoint: str | Path, dtype: str = "fp32", device: str = "cpu", model_name: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(checkpoint)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as exc:
            raise BackendError(f"local backend: {path} has no usable tokenizer ({exc})") from None
        if not self.tokenizer.chat_template:
            raise BackendError(f"local backend: {path}: the tokenizer has no chat template (tokenizer_config.json)")
        torch_dtype = getattr(torch, _DTYPES.get(dtype, dtype))
        try:
            self.hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device).eval()
        except Exception as exc:
            raise BackendError(f"local backend: {path}: not a loadable causal LM checkpoint ({exc})") from None
        self.device = device
        self.model = model_name or path.resolve().name
        self.checkpoint = path
        self._lock = threading.Lock()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"

    def prompt_text(self, request: GenerationRequest) -> str:
        if request.messages is None:
            assert request.prompt is not None
            return request.prompt
        messages = with_reasoning_switch(request.messages, request.thinking)
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _decode(self, texts: list[str], sampling, seed: int | None) -> list[tuple[str, str, int, int]]:
        """(text, finish reason, completion tokens, prompt tokens) per prompt, decoded together."""
        import torch

        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        stops = [t for t in {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id} if t is not None]
        options = {"max_new_tokens": sampling.max_tokens, "eos_token_id": stops,
                   "pad_token_id": self.tokenizer.pad_token_id}  # fmt: skip
        if seed is None:
            options |= {"do_sample": False}
        else:
            torch.manual_seed(seed)
            options |= {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p}
        with torch.no_grad():
            out = self.hf_model.generate(**batch, **options)
        prompt_len = batch["input_ids"].shape[1]
        results = []
        for row, mask in zip(out, batch["attention_mask"], strict=True):
            new = row[prompt_len:].tolist()
            ended = next((i for i, t in enumerate(new) if t in stops), None)
            new = new if ended is None else new[:ended]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            reason = "stop" if ended is not None else "length"
            for stop in sampling.stop:
                if stop in text:
                    text, reason = text.split(stop, 1)[0], "stop"
            results.append((text, reason, len(new), int(mask.sum())))
        return results

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        with self._lock:
            prompts: dict[str, str] = {}
            answers: dict[str, GenerationResponse] = {}
            for r in requests:
                try:
                    prompts[r.key] = self.prompt_text(r)
                except Exception as exc:
                    answers[r.key] = error_response(r, f"bad request: {exc}")
            greedy = [r for r in requests if r.key in prompts and r.sampling.temperature == 0]
            for sampling in {r.sampling for r in greedy}:  # one batch per sampling setting
                group = [r for r in greedy if r.sampling == sampling]
                decoded = self._decode([prompts[r.key] for r in group], sampling, None)
                for r, (text, reason, n, prompt_n) in zip(group, decoded, strict=True):
                    answers[r.key] = GenerationResponse(key=r.key, texts=[text] * sampling.n,
                        finish_reasons=[reason] * sampling.n, prompt_tokens=prompt_n,
                        completion_tokens=[n] * sampling.n)  # fmt: skip
            for r in requests:
                if r.key in answers or r.key not in prompts:
                    continue
                samples = [
                    self._decode([prompts[r.key]], r.sampling, r.sampling.seed + i)[0] for i in range(r.sampling.n)
                ]
                answers[r.key] = GenerationResponse(
                    key=r.key, texts=[s[0] for s in samples], finish_reasons=[s[1] for s in samples],
                    prompt_tokens=samples[0][3], completion_tokens=[s[2] for s in samples],
                )  # fmt: skip
            return [answers[r.key] for r in requests]

    def close(self) -> None:
        return
