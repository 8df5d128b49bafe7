"""FastDecoder against the transformers NemotronH forward: logits at every position, greedy ids, limits, reset.

The reference is `model(full_ids)` over prompt + continuation in one pass (transformers' chunked Mamba-2 scan and
causal SDPA), so prefill + step-by-step decode must reproduce a different algorithm's numbers, position by
position, to 1e-4 in fp32.
"""

from __future__ import annotations

import pytest
import torch

from model.configs import get_config, to_hf_config
from model.fast_decode import DecodeError, FastDecoder, decode_greedy, per_token_times
from nano2.errors import Nano2Error

# torch.compile's own imports touch a deprecated torch.jit API; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

TOL = 1e-4
PROMPT, NEW = 12, 24

MODELS = {
    "tiny-12b": ("tiny-12b", {}),
    "tiny-9b": ("tiny-9b", {}),
    "attention-only": ("tiny-12b", {"hybrid_override_pattern": "*-*-*-"}),
    "mamba-only": ("tiny-12b", {"hybrid_override_pattern": "M-M-MM-"}),
}


def build(name: str, dtype: torch.dtype = torch.float32):
    from transformers import NemotronHForCausalLM

    config_name, overrides = MODELS[name]
    torch.manual_seed(0)
    return NemotronHForCausalLM(to_hf_config(get_config(config_name), **overrides)).eval().to(dtype)


@pytest.fixture(scope="module")
def models() -> dict:
    return {name: build(name) for name in MODELS}


def reference_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(ids, use_cache=False).logits.float()


def random_ids(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(3, 4096, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", list(MODELS))
def test_logits_match_full_forward_at_every_position(models, name, batch):
    model = models[name]
    ids = random_ids(batch, PROMPT + NEW, seed=batch)
    ref = reference_logits(model, ids)
    decoder = FastDecoder(model, max_batch=3, max_len=PROMPT + NEW)
    got = [decoder.prefill(ids[:, :PROMPT])]
    for i in range(PROMPT, PROMPT + NEW - 1):
        got.append(decoder.step(ids[:, i]))
    got = torch.stack(got, dim=1)  # logits for positions PROMPT-1 .. PROMPT+NEW-2
    assert got.dtype == torch.float32 and got.shape == (batch, NEW, model.config.vocab_size)
    err = (got - ref[:, PROMPT - 1 : PROMPT + NEW - 1]).abs().max().item()
    assert err < TOL, f"{name} batch {batch}: max |fast - full forward| = {err:.2e}"
    assert decoder.position == PROMPT + NEW - 1


def test_compiled_mamba_core_matches_full_forward(models):
    """compile=True (torch.compile of the Mamba step core) gives the same logits as the eager path."""
    model = models["tiny-9b"]
    ids = random_ids(1, PROMPT + 8, seed=4)
    ref = reference_logits(model, ids)
    decoder = FastDecoder(model, max_len=PROMPT + 8, compile=True)
    got = [decoder.prefill(ids[:, :PROMPT])] + [decoder.step(ids[:, i]) for i in range(PROMPT, PROMPT + 7)]
    assert (torch.stack(got, 1) - ref[:, PROMPT - 1 : PROMPT + 7]).abs().max().item() < TOL


@pytest.mark.parametrize("prompt", [1, 2, 5])
def test_prompts_shorter_than_the_conv_window(models, prompt):
    """The conv window is zero-padded on the left when the prompt is shorter than the kernel."""
    model = models["tiny-12b"]
    ids = random_ids(2, prompt + 8, seed=prompt)
    ref = reference_logits(model, ids)
    decoder = FastDecoder(model, max_batch=2, max_len=64)
    got = [decoder.prefill(ids[:, :prompt])] + [decoder.step(ids[:, i]) for i in range(prompt, prompt + 7)]
    assert (torch.stack(got, 1) - ref[:, prompt - 1 : prompt + 7]).abs().max().item() < TOL


def hf_greedy(model, ids: torch.Tensor, new: int) -> torch.Tensor:
    """Greedy decode with the transformers cache, one token per forward."""
    with torch.inference_mode():
        out = model(ids, use_cache=True)
        tokens = [out.logits[:, -1].argmax(-1)]
        for _ in range(new - 1):
            out = model(tokens[-1][:, None], past_key_values=out.past_key_values, use_cache=True)
            tokens.append(out.logits[:, -1].argmax(-1))
    return torch.cat([ids, torch.stack(tokens, 1)], 1)


@pytest.mark.parametrize("name,batch", [("tiny-12b", 1), ("tiny-12b", 3), ("tiny-9b", 2), ("attention-only", 2)])
def test_greedy_equals_transformers_cache_decode(models, name, batch):
    model = models[name]
    ids = random_ids(batch, PROMPT, seed=10 + batch)
    decoder = FastDecoder(model, max_batch=batch, max_len=PROMPT + NEW)
    ours = decode_greedy(decoder, ids, NEW)
    assert ours.shape == (batch, PROMPT + NEW)
    assert torch.equal(ours, hf_greedy(model, ids, NEW))


def test_greedy_equals_generate(models):
    model = models["tiny-12b"]
    ids = random_ids(1, PROMPT, seed=7)
    with torch.inference_mode():
        ref = model.generate(ids, do_sample=False, max_new_tokens=16, min_new_tokens=16, pad_token_id=0)
    assert torch.equal(decode_greedy(FastDecoder(model, max_len=64), ids, 16), ref)


def test_max_len_is_a_clear_error(models):
    decoder = FastDecoder(models["tiny-12b"], max_batch=2, max_len=16)
    with pytest.raises(Nano2Error, match="max_len=16"):
        decoder.prefill(random_ids(1, 17, seed=0))
    decoder.prefill(random_ids(1, 15, seed=0))
    decoder.step(torch.tensor([5]))
    assert decoder.position == 16
    with pytest.raises(DecodeError, match="exceed max_len=16"):
        decoder.step(torch.tensor([5]))
    assert decoder.position == 16
    with pytest.raises(Nano2Error, match="max_len"):
        decode_greedy(decoder, random_ids(1, 10, seed=0), 8)
    assert decode_greedy(decoder, random_ids(1, 10, seed=0), 7).shape == (1, 17)


def test_batch_and_order_errors(models):
    decoder = FastDecoder(models["tiny-9b"], max_batch=2, max_len=32)
    with pytest.raises(DecodeError, match="prefill"):
        decoder.step(torch.tensor([1]))
    with pytest.raises(DecodeError, match="max_batch=2"):
        decoder.prefill(random_ids(3, 4, seed=0))
    decoder.prefill(random_ids(2, 4, seed=0))
    with pytest.raises(DecodeError, match=r"shape \(2,\)"):
        decoder.step(torch.tensor([1]))
    with pytest.raises(DecodeError, match="NemotronH"):
        FastDecoder(torch.nn.Linear(2, 2))


def test_reset_forgets_the_previous_sequence(models):
    model = models["tiny-12b"]
    first, second = random_ids(2, 20, seed=1), random_ids(2, 9, seed=2)
    fresh = FastDecoder(model, max_batch=2, max_len=40)
    expected = decode_greedy(fresh, second, 10)
    reused = FastDecoder(model, max_batch=2, max_len=40)
    decode_greedy(reused, first, 15)
    reused.reset()
    assert reused.position == 0 and reused.batch == 0
    with pytest.raises(DecodeError):
        reused.step(torch.tensor([1, 2]))
    for layer in reused.layers:
        for buf in ("conv_state", "ssm_state", "k_cache", "v_cache"):
            if hasattr(layer, buf):
                assert not getattr(layer, buf).any()
    assert torch.equal(decode_greedy(reused, second, 10), expected)
    # prefill alone also starts over, and a smaller batch reuses the same buffers
    logits = reused.prefill(second[:1])
    assert torch.allclose(logits, reference_logits(model, second[:1])[:, -1], atol=TOL, rtol=0)


def test_bf16_model_decodes_close_to_its_forward():
    model = build("tiny-12b", torch.bfloat16)
    ids = random_ids(1, 20, seed=3)
    ref = reference_logits(model, ids)
    decoder = FastDecoder(model, max_len=32)
    got = torch.stack([decoder.prefill(ids[:, :8])] + [decoder.step(ids[:, i]) for i in range(8, 19)], 1)
    assert got.dtype == torch.float32
    scale = ref.abs().max().item()
    assert (got - ref[:, 7:19]).abs().max().item() < 0.05 * scale


def test_per_token_times_rows(models):
    decoder = FastDecoder(models["tiny-12b"], max_len=64)
    rows = per_token_times(decoder, [8, 16], steps=3)
    assert [r["position"] for r in rows] == [8, 16]
    for row in rows:
        assert row["step_ms"] > 0 and row["mamba_ms"] > 0 and row["attention_ms"] > 0 and row["mlp_ms"] > 0


def test_large_batch_chunked_prefill_matches_full_forward(models):
    """Batched decode as the equal-memory benchmark runs it: a batch past `_Linear._MANY_ROWS` (the F.linear path),
    prompts prefilled a few rows at a time; every sequence still matches the reference forward."""
    model = models["tiny-12b"]
    batch, prompt, new = 34, 6, 4
    ids = random_ids(batch, prompt + new, seed=34)
    ref = reference_logits(model, ids)
    decoder = FastDecoder(model, max_batch=batch, max_len=prompt + new)
    got = [decoder.prefill(ids[:, :prompt], row_chunk=5)]
    got += [decoder.step(ids[:, i]) for i in range(prompt, prompt + new - 1)]
    err = (torch.stack(got, 1) - ref[:, prompt - 1 : prompt + new - 1]).abs().max().item()
    assert err < TOL, f"batch {batch}: max |fast - full forward| = {err:.2e}"
    with pytest.raises(DecodeError, match="row_chunk"):
        decoder.prefill(ids[:, :prompt], row_chunk=0)


def test_memory_bytes_agree_with_size_arithmetic(models):
    """What the decoder allocates for its state is what model.size counts (KV, conv window of kernel - 1, fp32 SSM
    state); weights are at least the model's parameters (plus the fused q/k/v copy and fp32 norm vectors)."""
    from model.size import inference_memory

    cfg = get_config("tiny-12b")
    batch, length = 3, 40
    decoder = FastDecoder(models["tiny-12b"], max_batch=batch, max_len=length)
    measured = decoder.memory_bytes()
    expected = inference_memory(cfg, length, batch, "fp32")
    assert measured["kv_cache"] == expected.kv_cache
    assert measured["mamba_conv"] == expected.mamba_conv
    assert measured["mamba_ssm"] == expected.mamba_ssm
    assert expected.weights <= measured["weights"] < 1.2 * expected.weights


def test_seek_moves_the_position_and_guards_the_buffers(models):
    decoder = FastDecoder(models["tiny-12b"], max_batch=4, max_len=64)
    decoder.prefill(random_ids(1, 5, seed=0))
    decoder.seek(40, batch=4)
    assert decoder.position == 40 and decoder.batch == 4
    assert decoder.step(torch.tensor([1, 2, 3, 4])).shape == (4, decoder.vocab_size)
    assert decoder.position == 41
    with pytest.raises(DecodeError, match="max_len"):
        decoder.seek(64)
    with pytest.raises(DecodeError, match="max_batch=4"):
        decoder.seek(10, batch=5)


def test_step_layer_times_cover_every_layer(models):
    model = models["tiny-12b"]
    decoder = FastDecoder(model, max_len=16)
    decoder.prefill(random_ids(1, 4, seed=0))
    per_layer, other = decoder.step_layer_times(torch.tensor([7]))
    assert len(per_layer) == len(model.config.layers_block_type) and all(t > 0 for t in per_layer) and other > 0
    assert decoder.position == 5


def test_compiled_batched_decode_matches_full_forward(models):
    """compile=True at a batch past `_MANY_ROWS`: eager core with the compiled one-pass SSM update."""
    model = models["tiny-9b"]
    batch, prompt, new = 33, 5, 3
    ids = random_ids(batch, prompt + new, seed=33)
    ref = reference_logits(model, ids)
    decoder = FastDecoder(model, max_batch=batch, max_len=prompt + new, compile=True)
    got = [decoder.prefill(ids[:, :prompt])] + [decoder.step(ids[:, i]) for i in range(prompt, prompt + new - 1)]
    assert (torch.stack(got, 1) - ref[:, prompt - 1 : prompt + new - 1]).abs().max().item() < TOL
