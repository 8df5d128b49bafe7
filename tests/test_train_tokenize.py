"""`nano2 train tokenize`: shards mirror the input layout, manifests carry the counts mixtures/ reads, chat rows
follow the training-text rule, and bad rows are counted drops."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mixtures.sources import read_source_tokens
from model.tokenizer import chat_training_text, load_tokenizer
from nano2.contracts.megatron import find_shards
from nano2.errors import Nano2Error
from nano2.manifest import read_manifest
from tests.test_train_support import build_corpus, tokenize_corpus, write_jsonl
from train.tokenize import tokenize_inputs


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, tiny_tokenizer_dir):
    root = tmp_path_factory.mktemp("tok")
    corpus = build_corpus(root / "data")
    return corpus, tokenize_corpus(corpus, root / "tokens", tiny_tokenizer_dir)


def test_layout_and_manifest_counts_are_what_mixtures_reads(tokenized):
    _, tokens = tokenized
    web = read_manifest(tokens / "curated/web")
    assert web.kind == "tokens"
    for level in ("high", "medium"):
        shards = find_shards(tokens / f"curated/web/level={level}")
        counted, manifest_id = read_source_tokens(tokens, f"curated/web/level={level}")
        assert counted == sum(s.tokens for s in shards) == web.stats.by["level"][level].tokens
        assert manifest_id == web.id
        assert web.stats.by["level"][level].documents == sum(s.documents for s in shards)
    assert web.stats.tokens == sum(s.tokens for s in find_shards(tokens / "curated/web"))
    code_tokens, _ = read_source_tokens(tokens, "curated/code")
    assert code_tokens == sum(s.tokens for s in find_shards(tokens / "curated/code")) > 0
    assert web.extra["tokenizer"]["vocab_size"] == 1024 and web.extra["dtype"] == "uint16"
    assert {f.path for f in web.files} >= {"level=high/part-0.bin", "level=high/part-0.idx"}


def test_documents_decode_to_the_input_text_followed_by_eos(tokenized, tiny_tokenizer_dir):
    corpus, tokens = tokenized
    tok = load_tokenizer(tiny_tokenizer_dir)
    rows = [json.loads(line) for line in (corpus / "curated/web/level=medium/part-1.jsonl").read_text().splitlines()]
    shard = next(s for s in find_shards(tokens / "curated/web/level=medium") if s.prefix.name == "part-1")
    assert shard.documents == len(rows)
    for i, row in enumerate(rows):
        ids = shard.document(i).tolist()
        assert ids[-1] == tok.token_to_id("</s>")
        assert tok.decode(ids[:-1], skip_special_tokens=False) == row["text"]


def test_chat_rows_follow_the_training_text_rule(tmp_path, tiny_tokenizer_dir):
    thinking = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nadd them\n</think>\n4"},
    ]
    quiet = [
        {"role": "system", "content": "Be brief. /no_think"},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"},
    ]
    # written out by hand from the brief's rule, independently of render_chat
    expected_thinking = (
        "<SPECIAL_10>System\n\n<SPECIAL_12>\n<SPECIAL_11>User\nWhat is 2+2?\n<SPECIAL_12>\n"
        "<SPECIAL_11>Assistant\n<think>\nadd them\n</think>\n4\n<SPECIAL_12>\n"
    )
    expected_quiet = (
        "<SPECIAL_10>System\nBe brief.\n<SPECIAL_12>\n<SPECIAL_11>User\nCapital of France?\n<SPECIAL_12>\n"
        "<SPECIAL_11>Assistant\n<think></think>Paris\n<SPECIAL_12>\n"
    )
    assert "".join(chat_training_text(thinking)) == expected_thinking
    prompt, target = chat_training_text(quiet)
    assert prompt + target == expected_quiet and target == "Paris\n<SPECIAL_12>\n"

    rows = [
        {"id": "a", "messages": thinking, "chosen": None},
        {"id": "b", "messages": quiet, "chosen": None},
        {"id": "c", "messages": thinking[:1], "chosen": "4"},  # preference row: trains on `chosen`
        {"id": "d", "messages": thinking[:1], "chosen": None},  # no target: dropped
    ]
    (tmp_path / "synthetic/reasoning").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "synthetic/reasoning/part-0.parquet")
    (report,) = tokenize_inputs(
        [tmp_path / "synthetic/reasoning"], tmp_path / "tokens", tiny_tokenizer_dir, tmp_path, show_progress=False
    )
    assert report.documents == 3 and report.chat_rows == 3
    assert dict(report.dropped) == {
        "bad chat row: a chat row needs at least a prompt message and the assistant target": 1
    }
    tok = load_tokenizer(tiny_tokenizer_dir)
    (shard,) = find_shards(tmp_path / "tokens/synthetic/reasoning")
    texts = [tok.decode(shard.document(i).tolist()[:-1], skip_special_tokens=False) for i in range(3)]
    assert texts[0] == expected_thinking and texts[1] == expected_quiet
    assert texts[2].endswith("<SPECIAL_11>Assistant\n<think>\n4\n<SPECIAL_12>\n")
    manifest = read_manifest(tmp_path / "tokens/synthetic/reasoning")
    assert manifest.extra["dropped"] == dict(report.dropped) and manifest.stats.documents == 3


def test_bad_rows_are_counted_and_bad_inputs_are_errors(tmp_path, tiny_tokenizer_dir):
    data = tmp_path / "data"
    path = write_jsonl(data / "web/part-0.jsonl", [{"text": "good text"}, {"text": "  "}, {"text": 3}, {"id": "x"}])
    with open(path, "a") as fh:
        fh.write("{not json\n")
    (report,) = tokenize_inputs([data / "web"], tmp_path / "out", tiny_tokenizer_dir, data, show_progress=False)
    assert report.documents == 1
    assert dict(report.dropped) == {
        "empty text": 1,
        "text is not a string": 1,
        "no text and no messages": 1,
        "invalid JSON line": 1,
    }
    with pytest.raises(Nano2Error, match="already exists; pass --overwrite"):
        tokenize_inputs([data / "web"], tmp_path / "out", tiny_tokenizer_dir, data, show_progress=False)
    (again,) = tokenize_inputs(
        [data / "web"], tmp_path / "out", tiny_tokenizer_dir, data, overwrite=True, show_progress=False
    )
    assert again.documents == 1
    with pytest.raises(Nano2Error, match="not under --data-root"):
        tokenize_inputs([data / "web"], tmp_path / "o2", tiny_tokenizer_dir, tmp_path / "elsewhere")
    (data / "odd").mkdir()
    pq.write_table(pa.Table.from_pylist([{"body": "x"}]), data / "odd/part.parquet")
    with pytest.raises(Nano2Error, match="no 'text' or 'messages' column"):
        tokenize_inputs([data / "odd"], tmp_path / "o3", tiny_tokenizer_dir, data, show_progress=False)
    assert not list((tmp_path / "o3").rglob("*.bin"))


@pytest.mark.realdata
def test_cli_tokenizes_shared_web_text(cli, shared_data, tmp_path, tiny_tokenizer_dir):
    res = cli(
        "train", "tokenize", shared_data / "web", "-o", tmp_path, "-t", tiny_tokenizer_dir,
        "--data-root", shared_data, "--glob", "ccnet_*.jsonl",
    )  # fmt: skip
    assert res.code == 0, res.err
    manifest = read_manifest(tmp_path / "web")
    assert manifest.stats.documents == 20  # two CCNet shards of 10 documents (SOURCES.md)
    shards = find_shards(tmp_path / "web")
    assert manifest.stats.tokens == sum(s.tokens for s in shards)
    eos = load_tokenizer(tiny_tokenizer_dir).token_to_id("</s>")
    assert all(int(np.asarray(s.document(i))[-1]) == eos for s in shards for i in range(s.documents))
    assert "20 documents" in res.out


def test_several_data_roots_mirror_each_input_below_its_innermost_root(tmp_path):
    """Documents under RUN/data and chat rows under RUN/chat land in one token tree."""
    from train.tokenize import output_location

    run = tmp_path / "run"
    roots = [run / "data", run]
    out = run / "data" / "tokens"
    assert output_location(run / "data" / "curated" / "web", roots, out) == out / "curated" / "web"
    assert output_location(run / "chat" / "synthetic" / "truncated", roots, out) == out / "chat/synthetic/truncated"
    with pytest.raises(Nano2Error, match="not under --data-root"):
        output_location(tmp_path / "elsewhere", roots, out)
