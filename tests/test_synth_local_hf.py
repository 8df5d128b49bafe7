"""The local backend on any Hugging Face causal LM: a tiny random `LlamaForCausalLM` saved with `save_pretrained`,
with a tokenizer that carries its own chat template, built offline here."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from nano2.contracts.documents import DOCUMENT_SCHEMA, Meta, document_record
from nano2.contracts.shards import shard_name, subset_dir
from synthetic.backends import BackendConfig, make_backend
from synthetic.backends.base import GenerationRequest, Sampling
from synthetic.backends.local import HFCausalLM
from synthetic.records import read_documents
from tests.test_train_support import repo_documents

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tiny_tokenizer_dir / "tokenizer.json"), eos_token="</s>",
                                        chat_template=CHAT_TEMPLATE)  # fmt: skip
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    # A random model ends a reply wherever its noise puts end-of-text (often within 10 tokens, which then depends on
    # the tokenizer, trained on this repository's files): never ending keeps the replies long enough to pass the
    # prose checks whatever the repository holds. Greedy and seeded decoding are tested all the same.
    model.generation_config.suppress_tokens = [tokenizer.eos_token_id]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _request(key: str, text: str, temperature: float = 0.0, seed: int = 0, n: int = 1) -> GenerationRequest:
    sampling = Sampling(max_tokens=12, temperature=temperature, top_p=0.95, seed=seed, n=n)
    return GenerationRequest(key=key, messages=({"role": "user", "content": text},), sampling=sampling, thinking=None)


def test_any_causal_lm_generates_with_its_own_chat_template(tiny_llama):
    backend = make_backend(BackendConfig(kind="local", model=str(tiny_llama)))
    assert isinstance(backend, HFCausalLM)
    rendered = backend.prompt_text(_request("a", "Hello there"))
    assert rendered.startswith("<|user|>\nHello there") and rendered.endswith("<|assistant|>\n")  # its template
    texts = ["Hello there", "What is a tokenizer?", "Write one line."]
    batched = backend.generate([_request(str(i), t) for i, t in enumerate(texts)])
    alone = [backend.generate([_request(str(i), t)])[0] for i, t in enumerate(texts)]
    assert [r.texts for r in batched] == [r.texts for r in alone]  # greedy: a left-padded batch changes nothing
    assert all(r.ok and r.completion_tokens[0] > 0 and r.prompt_tokens > 0 for r in batched)
    one = backend.generate([_request("s", "Tell me", 1.0, seed=5, n=2), _request("t", "Other", 1.0, seed=9)])[0]
    again = backend.generate([_request("s", "Tell me", 1.0, seed=5, n=2)])[0]
    assert one.texts == again.texts  # per-request seeds: the batch it came in does not matter
    assert one.texts[0] != one.texts[1]  # sample i uses seed + i


def test_synth_run_with_a_local_llama_writes_rows(tiny_llama, tmp_path, cli):
    rows = []
    for i, doc in enumerate(repo_documents("mixtures", ".py", 4)):
        metadata = {Meta.BUCKET: 19 if i % 2 else 3, Meta.LANGUAGE: "en", Meta.URL: f"https://example.org/{i}"}
        rows.append(document_record(doc_id=doc["id"], text=doc["text"][:600], source="repo", token_count=None,
                                    metadata=metadata))  # fmt: skip
    curated = tmp_path / "curated" / "web"
    subset_dir(curated, "mixed").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), subset_dir(curated, "mixed") / shard_name(0))
    settings = {"max_input_tokens": 400, "max_output_tokens": 48, "temperature": 0.8, "drop_truncated": False}
    config = {
        "name": "hf-local", "output_dir": str(tmp_path / "synthetic"), "batch_size": 4,
        "backend": {"kind": "local", "model": str(tiny_llama)},
        "rephrase": {"enabled": True, "inputs": [{"path": str(curated)}], "high_tasks": ["distill"],
                     "low_tasks": ["wiki_paraphrase"], "tasks": {"distill": settings, "wiki_paraphrase": settings}},
    }  # fmt: skip
    path = tmp_path / "synth.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("synth", "run", path)
    assert result.code == 0, result.err
    written = read_documents(tmp_path / "synthetic" / "rephrase")
    assert written and {r["metadata"]["task"] for r in written} <= {"distill", "wiki_paraphrase"}
    assert all(r["metadata"]["model"].startswith(tiny_llama.name + "@") for r in written)
