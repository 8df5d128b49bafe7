"""Cached decoding with sampling, stop strings and Nano 2's thinking-budget rule.

A decoder is anything with `prefill(ids[batch, seq]) -> logits[batch, vocab]` and `step(tokens[batch]) ->
logits[batch, vocab]` that keeps its own cache: `HFDecoder` (the transformers cache: Mamba conv + SSM state and KV)
is the reference, `model.fast_decode.FastDecoder` the fast path. `generate` drives either one token at a time.

The budget rule (Nano 2 model card): while the model is thinking, count thinking tokens; once the budget is reached,
`</think>` is inserted right after the next token that contains a newline; if no newline comes within `grace` (500)
more tokens, the trace is cut hard at budget + grace. `ThinkingBudget` is a pure state machine over token ids, so it
is tested on scripted streams without a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from nano2.contracts.chat import THINK_CLOSE, THINK_OPEN
from nano2.errors import Nano2Error


class Decoder(Protocol):
    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor: ...

    def step(self, tokens: torch.Tensor) -> torch.Tensor: ...


class HFDecoder:
    """Reference decoder on the transformers cache (`NemotronHForCausalLM(..., use_cache=True)`)."""

    def __init__(self, model):
        self.model = model
        self.cache = None

    @torch.inference_mode()
    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, use_cache=True)
        self.cache = out.past_key_values
        return out.logits[:, -1].float()

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.cache is None:
            raise Nano2Error("step() before prefill()")
        out = self.model(input_ids=tokens.view(-1, 1), past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        return out.logits[:, -1].float()


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    stop_strings: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise Nano2Error(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise Nano2Error(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise Nano2Error(f"top_p must be in (0, 1], got {self.top_p}")


def sample_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Greedy at temperature 0; otherwise temperature + nucleus (top-p) sampling from a seeded generator."""
    logits = logits.float().view(-1)
    if params.temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p  # always keeps the top token
        sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=generator))


@dataclass
class ThinkingBudget:
    """Nano 2's budget rule as a state machine: `observe(token)` returns the tokens to force next (often none).

    `thinking` is True when the prompt already opened `<think>` (the chat template's generation prompt does).
    """

    budget: int
    close_ids: Sequence[int]
    newline_ids: frozenset[int]
    open_id: int | None = None
    grace: int = 500
    hard_close_ids: Sequence[int] | None = None
    thinking: bool = True
    thinking_tokens: int = 0
    forced: str | None = None  # "newline" or "hard" once the rule has closed the trace
    _close_first: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.budget < 0 or self.grace < 0:
            raise Nano2Error(f"thinking budget and grace must be >= 0, got {self.budget} and {self.grace}")
        if not self.close_ids:
            raise Nano2Error("thinking budget needs the token ids of </think>")
        self._close_first = self.close_ids[0]

    def observe(self, token: int) -> list[int]:
        if not self.thinking:
            if self.open_id is not None and token == self.open_id and self.forced is None:
                self.thinking, self.thinking_tokens = True, 0
            return []
        if token == self._close_first and len(self.close_ids) == 1:
            self.thinking = False  # the model closed its trace itself
            return []
        self.thinking_tokens += 1
        if self.thinking_tokens >= self.budget and token in self.newline_ids:
            self.thinking, self.forced = False, "newline"
            return list(self.close_ids)
        if self.thinking_tokens >= self.budget + self.grace:
            self.thinking, self.forced = False, "hard"
            return list(self.hard_close_ids or self.close_ids)
        return []


def newline_token_ids(tokenizer) -> frozenset[int]:
    """Ids of every token whose text contains a newline (for the budget rule)."""
    ids = set()
    for i in range(tokenizer.get_vocab_size() if hasattr(tokenizer, "get_vocab_size") else len(tokenizer)):
        if "\n" in tokenizer.decode([i]):
            ids.add(i)
    return frozenset(ids)


@dataclass
class GenerationResult:
    token_ids: list[int]
    text: str | None
    finish_reason: str  # "length", "stop_token", "stop_string"
    thinking_tokens: int = 0
    forced_close: str | None = None


def _encode(tokenizer, text: str) -> list[int]:
    enc = tokenizer.encode(text, add_special_tokens=False)
    return list(enc.ids) if hasattr(enc, "ids") else list(enc)


def make_budget(tokenizer, budget: int, grace: int = 500, thinking: bool = True) -> ThinkingBudget:
    """A ThinkingBudget for a tokenizer that has `<think>`/`</think>` as single special tokens."""
    close = _encode(tokenizer, THINK_CLOSE)
    opened = _encode(tokenizer, THINK_OPEN)
    if len(close) != 1:
        raise Nano2Error(f"the tokenizer does not have {THINK_CLOSE} as one token; cannot apply a thinking budget")
    return ThinkingBudget(
        budget=budget,
        close_ids=close,
        newline_ids=newline_token_ids(tokenizer),
        open_id=opened[0] if len(opened) == 1 else None,
        grace=grace,
        hard_close_ids=_encode(tokenizer, "\n") + close,
        thinking=thinking,
    )


@torch.inference_mode()
def generate(
    decoder: Decoder,
    prompt_ids: Sequence[int],
    params: SamplingParams | None = None,
    tokenizer=None,
    budget: ThinkingBudget | None = None,
) -> GenerationResult:
    """Generate up to `max_new_tokens` (forced budget tokens count too) for one prompt."""
    params = params or SamplingParams()
    if not prompt_ids:
        raise Nano2Error("generate: the prompt is empty")
    if params.stop_strings and tokenizer is None:
        raise Nano2Error("generate: stop strings need a tokenizer to decode with")
    generator = torch.Generator().manual_seed(params.seed)
    logits = decoder.prefill(torch.tensor([list(prompt_ids)], dtype=torch.long))
    out: list[int] = []
    forced: list[int] = []
    finish = "length"
    stops = set(params.stop_token_ids)
    while len(out) < params.max_new_tokens:
        token = forced.pop(0) if forced else sample_token(logits[0], params, generator)
        out.append(token)
        if token in stops:
            finish = "stop_token"
            break
        if budget is not None and not forced:
            forced = budget.observe(token)
        if params.stop_strings and _hits_stop(tokenizer, out, params.stop_strings):
            finish = "stop_string"
            break
        if len(out) < params.max_new_tokens:
            logits = decoder.step(torch.tensor([token], dtype=torch.long))
    text = _decode(tokenizer, out) if tokenizer is not None else None
    if finish == "stop_string" and text is not None:
        cut = min(text.find(s) for s in params.stop_strings if s in text)
        text = text[:cut]
    return GenerationResult(
        token_ids=out,
        text=text,
        finish_reason=finish,
        thinking_tokens=budget.thinking_tokens if budget else 0,
        forced_close=budget.forced if budget else None,
    )


def _decode(tokenizer, ids: list[int]) -> str:
    """Text with special tokens kept (a reader wants to see <think> and </think>)."""
    try:
        return tokenizer.decode(ids, skip_special_tokens=False)
    except TypeError:
        return tokenizer.decode(ids)


def _hits_stop(tokenizer, out: list[int], stops: Iterable[str]) -> bool:
    tail = _decode(tokenizer, out[-32:])
    return any(s in tail for s in stops)
