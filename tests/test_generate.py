"""Cached decoding equals a full forward; sampling, stop strings and the thinking-budget rule."""

from __future__ import annotations

import pytest
import torch

from model.configs import get_config
from model.generate import GenerationResult, HFDecoder, SamplingParams, ThinkingBudget, generate
from model.io import build_model
from nano2.errors import Nano2Error

NL, A, CLOSE, OPEN, HARD_NL = 10, 1, 99, 98, 11


def rule(budget=5, grace=10, thinking=True):
    return ThinkingBudget(
        budget=budget,
        close_ids=[CLOSE],
        newline_ids=frozenset({NL}),
        open_id=OPEN,
        grace=grace,
        hard_close_ids=[HARD_NL, CLOSE],
        thinking=thinking,
    )


def feed(r: ThinkingBudget, stream):
    """Feed a scripted stream; return (position after which tokens were forced, forced tokens)."""
    for i, tok in enumerate(stream):
        forced = r.observe(tok)
        if forced:
            return i, forced
    return None, []


def test_newline_before_the_budget_does_not_close():
    r = rule(budget=5)
    pos, forced = feed(r, [A, NL, A, A, A, A, NL, A])
    assert (pos, forced, r.forced) == (6, [CLOSE], "newline")
    assert r.thinking_tokens == 7 and not r.thinking


def test_newline_at_the_budget_closes_right_after_it():
    r = rule(budget=5)
    assert feed(r, [A, A, A, A, NL, A]) == (4, [CLOSE])


def test_newline_after_the_budget():
    r = rule(budget=3, grace=10)
    pos, forced = feed(r, [A] * 8 + [NL])
    assert (pos, forced) == (8, [CLOSE])


def test_no_newline_within_grace_is_a_hard_cut():
    r = rule(budget=5, grace=10)
    pos, forced = feed(r, [A] * 40)
    assert (pos, forced, r.forced) == (14, [HARD_NL, CLOSE], "hard")  # budget + grace = 15 thinking tokens


def test_model_closing_itself_stops_counting():
    r = rule(budget=3)
    assert feed(r, [A, CLOSE, A, A, A, NL, NL]) == (None, [])
    assert r.forced is None and r.thinking_tokens == 1


def test_reasoning_off_until_the_model_opens_a_trace():
    r = rule(budget=2, thinking=False)
    assert feed(r, [A, NL, A, NL]) == (None, [])
    assert feed(r, [OPEN, A, A, NL]) == (3, [CLOSE])


class ScriptedDecoder:
    """A decoder whose greedy choice at step i is script[i] (for testing the generation loop)."""

    def __init__(self, script, vocab=128):
        self.script, self.vocab, self.i, self.fed = script, vocab, 0, []

    def _logits(self):
        logits = torch.full((1, self.vocab), -1e9)
        logits[0, self.script[min(self.i, len(self.script) - 1)]] = 0.0
        return logits

    def prefill(self, ids):
        self.i = 0
        return self._logits()

    def step(self, tokens):
        self.fed.append(int(tokens[0]))
        self.i += 1
        return self._logits()


def test_generate_inserts_close_and_feeds_it_to_the_model():
    script = [A, A, A, NL, A, A, A, A]
    dec = ScriptedDecoder(script)
    res = generate(dec, [5, 6], SamplingParams(max_new_tokens=8), budget=rule(budget=2))
    assert res.token_ids[:5] == [A, A, A, NL, CLOSE]
    assert dec.fed[:5] == [A, A, A, NL, CLOSE]  # the forced token is part of the context
    assert res.forced_close == "newline" and res.finish_reason == "length" and len(res.token_ids) == 8


def test_stop_token_and_stop_string():
    class CharTok:
        def decode(self, ids):
            return "".join(chr(96 + i) for i in ids)

    res = generate(ScriptedDecoder([1, 2, 3, 4, 5]), [1], SamplingParams(max_new_tokens=10, stop_token_ids=(3,)))
    assert res.token_ids == [1, 2, 3] and res.finish_reason == "stop_token"
    res = generate(
        ScriptedDecoder([1, 2, 3, 4, 5]), [1], SamplingParams(max_new_tokens=10, stop_strings=("cd",)), CharTok()
    )
    assert isinstance(res, GenerationResult) and res.finish_reason == "stop_string" and res.text == "ab"


@pytest.fixture(scope="module")
def tiny():
    return build_model(get_config("tiny-12b"), seed=0)


def test_incremental_decoding_equals_full_forward(tiny):
    ids = torch.randint(0, 4096, (1, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = tiny(ids).logits[0]
    dec = HFDecoder(tiny)
    got = [dec.prefill(ids[:, :16])[0]]
    for t in range(16, 48):
        got.append(dec.step(ids[:, t])[0])
    inc = torch.stack(got[:-1])
    assert torch.allclose(inc, full[15:47], atol=1e-4, rtol=0)


def test_sampling_is_seeded(tiny):
    params = dict(max_new_tokens=12, temperature=1.0, top_p=0.9)
    a = generate(HFDecoder(tiny), [1, 2, 3], SamplingParams(seed=5, **params)).token_ids
    b = generate(HFDecoder(tiny), [1, 2, 3], SamplingParams(seed=5, **params)).token_ids
    c = generate(HFDecoder(tiny), [1, 2, 3], SamplingParams(seed=6, **params)).token_ids
    assert a == b and a != c
    greedy = generate(HFDecoder(tiny), [1, 2, 3], SamplingParams(max_new_tokens=12)).token_ids
    nucleus_of_one = generate(
        HFDecoder(tiny), [1, 2, 3], SamplingParams(max_new_tokens=12, temperature=1.0, top_p=1e-6)
    )
    assert nucleus_of_one.token_ids == greedy


def test_bad_sampling_params():
    for kwargs in ({"temperature": -1}, {"top_p": 0}, {"max_new_tokens": -1}):
        with pytest.raises(Nano2Error):
            SamplingParams(**kwargs)
    with pytest.raises(Nano2Error, match="empty"):
        generate(ScriptedDecoder([1]), [], SamplingParams())
