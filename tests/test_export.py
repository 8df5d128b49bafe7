"""Megatron-LM blend exports: exact shares, phase boundaries, and shards found on disk."""

from __future__ import annotations

import json
import struct
from fractions import Fraction

import numpy as np

from mixtures import compile_spec_file
from mixtures.export import MegatronShard, export_megatron, find_megatron_shards
from nano2.contracts.megatron import read_index_tokens
from tests.conftest import SPECS, small_spec
from tests.test_sources import make_artifact


def write_megatron_shard(prefix, doc_lengths, dtype_code=4):
    """An independent writer of Megatron's MMIDIDX index (version 1) and a matching .bin of int32 tokens."""
    lengths = np.asarray(doc_lengths, dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(lengths[:-1], dtype=np.int64) * 4]).astype(np.int64)
    docs = np.arange(len(lengths) + 1, dtype=np.int64)
    with open(f"{prefix}.idx", "wb") as fh:
        fh.write(b"MMIDIDX\x00\x00")
        fh.write(struct.pack("<Q", 1))
        fh.write(struct.pack("<B", dtype_code))
        fh.write(struct.pack("<Q", len(lengths)))
        fh.write(struct.pack("<Q", len(docs)))
        fh.write(lengths.tobytes())
        fh.write(pointers.tobytes())
        fh.write(docs.tobytes())
    np.zeros(int(lengths.sum()), dtype=np.int32).tofile(f"{prefix}.bin")


def test_index_reader(tmp_path):
    write_megatron_shard(tmp_path / "a_text_document", [5, 7, 11])
    assert read_index_tokens(tmp_path / "a_text_document.idx") == 23
    assert find_megatron_shards(tmp_path) == [MegatronShard(prefix=str(tmp_path / "a_text_document"), tokens=23)]


def test_megatron_export_of_12b(tmp_path):
    spec, plan = compile_spec_file(SPECS / "nano2-12b-pretrain.yaml")
    files = export_megatron(plan, spec, tmp_path)
    assert {f.name for f in files} >= {"01-phase1.data-args.txt", "03-phase3.per-split.json", "megatron-phases.json"}
    summary = json.loads((tmp_path / "megatron-phases.json").read_text())
    for blend, phase in zip(summary["phases"], plan.phases, strict=True):
        assert blend["train_iters"] == phase.end_step
        assert blend["train_samples"] == phase.end_step * 736
        weights = [float(w) for w in blend["data_path"][0::2]]
        assert abs(sum(weights) - 1) < 1e-12
        for alloc in phase.sources:
            i = blend["data_path"].index(f"{alloc.name}/{alloc.name}_text_document")
            # the written weight is the exact realised share, as precise as a double allows
            assert abs(Fraction(blend["data_path"][i - 1]) - Fraction(alloc.sequences, phase.sequences)) < 1e-15
    args = (tmp_path / "01-phase1.data-args.txt").read_text().split()
    assert args == summary["phases"][0]["data_path"]
    per_split = json.loads((tmp_path / "02-phase2.per-split.json").read_text())
    assert set(per_split) == {"train", "valid", "test"}


def test_local_shards_split_a_source_by_tokens(tmp_path, write_spec):
    root = tmp_path / "data"
    make_artifact(root, "web", tokens=3000)
    write_megatron_shard(root / "web" / "shard0_text_document", [1000])
    write_megatron_shard(root / "web" / "shard1_text_document", [1500, 500])
    spec = small_spec(total_tokens="2K")
    spec["sources"] = {"web": {"path": "web", "max_epochs": 1}, "code": {"tokens": "10K"}}
    spec["phases"] = [{"name": "only", "until": 1.0, "weights": {"web": 0.5, "code": 0.5}}]
    mixture, plan = compile_spec_file(write_spec(spec), root)
    export_megatron(plan, mixture, tmp_path / "out", data_root=root)
    data_path = json.loads((tmp_path / "out" / "megatron-phases.json").read_text())["phases"][0]["data_path"]
    pairs = dict(zip(data_path[1::2], (float(w) for w in data_path[0::2]), strict=True))
    shard0 = str(root / "web" / "shard0_text_document")
    shard1 = str(root / "web" / "shard1_text_document")
    assert abs(pairs[shard0] - 0.5 / 3) < 1e-12 and abs(pairs[shard1] - 1.0 / 3) < 1e-12
    assert pairs["code/code_text_document"] == 0.5
