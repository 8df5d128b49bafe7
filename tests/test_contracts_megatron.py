"""Megatron .bin/.idx: our writer is byte-identical to datatrove's Megatron writer, and the readers agree."""

from __future__ import annotations

import numpy as np
import pytest

from mixtures.export import find_megatron_shards
from nano2.contracts.megatron import (
    IndexedShardWriter,
    find_shards,
    read_index,
    read_index_tokens,
    token_dtype_for_vocab,
)
from nano2.errors import Nano2Error
from tests.test_train_support import repo_documents


@pytest.fixture(scope="module")
def documents(tiny_tokenizer_dir):
    from model.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_tokenizer_dir)
    texts = [d["text"] for d in repo_documents("nano2", ".py", 5)] + ["", "x"]
    return [np.asarray([*tok.encode(t, add_special_tokens=False).ids, 2], dtype=np.int64) for t in texts]


def test_writer_matches_datatrove_megatron_file_byte_for_byte(tmp_path, documents):
    from datatrove.pipeline.tokens.megatron_tokenizer import MegatronTokenizedFile

    reference = MegatronTokenizedFile(str(tmp_path / "ref"), "shard", token_size=2)
    for doc in documents:
        reference.write(doc.tolist())
    reference.close()
    writer = IndexedShardWriter(tmp_path / "ours" / "shard", np.uint16)
    for doc in documents:
        writer.add_document(doc)
    writer.close()
    for suffix in (".bin", ".idx"):
        assert (tmp_path / "ours" / f"shard{suffix}").read_bytes() == (tmp_path / "ref" / f"shard{suffix}").read_bytes()


def test_read_back_documents_and_counts(tmp_path, documents):
    writer = IndexedShardWriter(tmp_path / "a" / "s", np.int32)
    for doc in documents:
        writer.add_document(doc)
    shard = writer.close()
    assert shard.documents == len(documents)
    assert shard.tokens == sum(d.size for d in documents)
    assert shard.dtype == np.int32
    for i, doc in enumerate(documents):
        assert np.array_equal(shard.document(i), doc)
    assert list(shard.document_lengths()) == [d.size for d in documents]
    # the token count that mixtures/ reads for a Megatron blend, from the .idx alone
    assert read_index_tokens(shard.idx_path) == shard.tokens
    assert [s.tokens for s in find_megatron_shards(tmp_path)] == [shard.tokens]
    assert [s.prefix for s in find_shards(tmp_path)] == [tmp_path / "a" / "s"]


def test_dtype_rule_and_range_check(tmp_path):
    assert token_dtype_for_vocab(65_499) is np.uint16
    assert token_dtype_for_vocab(131_072) is np.int32
    writer = IndexedShardWriter(tmp_path / "s", np.uint16)
    with pytest.raises(Nano2Error, match="out of range"):
        writer.add_document([70_000])
    writer.abort()
    assert not list(tmp_path.iterdir())


def test_corrupt_shards_are_clear_errors(tmp_path, documents):
    writer = IndexedShardWriter(tmp_path / "s", np.uint16)
    writer.add_document(documents[0])
    shard = writer.close()
    data = shard.bin_path.read_bytes()
    shard.bin_path.write_bytes(data[:-2])
    with pytest.raises(Nano2Error, match=r"holds .* bytes but its index describes"):
        read_index(shard.prefix)
    shard.idx_path.write_bytes(b"NOTANIDX" + shard.idx_path.read_bytes()[8:])
    with pytest.raises(Nano2Error, match="bad magic"):
        read_index(shard.prefix)
    with pytest.raises(Nano2Error, match="index file not found"):
        read_index(tmp_path / "missing")
