"""The mixture loader reads exactly the plan: per phase and source, in phase order, within epochs, resumably."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest

from mixtures.compiler import compile_plan
from mixtures.sources import resolve_source_path, resolve_sources
from mixtures.spec import MixtureSpec
from model.tokenizer import load_tokenizer
from nano2.contracts.chat import IGNORE_INDEX
from nano2.contracts.megatron import IndexedShardWriter
from nano2.errors import Nano2Error
from tests.test_train_support import build_corpus, repo_documents, tokenize_corpus, train_spec
from train.data import MixtureLoader, _source_key
from train.tokenize import ShardTokenizer

EOS = 2


@pytest.fixture(scope="module")
def token_root(tmp_path_factory, tiny_tokenizer_dir):
    root = tmp_path_factory.mktemp("data")
    return tokenize_corpus(build_corpus(root / "corpus"), root / "tokens", tiny_tokenizer_dir)


def compile_at(root, spec: dict):
    spec_model = MixtureSpec.model_validate(spec)
    tokens, origins = resolve_sources(spec_model, root)
    return compile_plan(spec_model, tokens, origins)


def source_dirs(root, plan):
    return {s.name: resolve_source_path(root, s.origin) for s in plan.sources}


@pytest.fixture(scope="module")
def plan(token_root):
    return compile_at(token_root, train_spec(seq_len=32, batch=4, steps=20))


def all_batches(loader, rank=0, world=1):
    return [loader.next_batch(rank, world) for _ in range(loader.total_steps - loader.state.step)]


def test_realised_sequences_equal_the_plan_and_phases_switch_at_the_planned_step(token_root, plan):
    loader = MixtureLoader(plan, source_dirs(token_root, plan), seed=3)
    batches = all_batches(loader)
    assert [b.phase for b in batches] == [plan.phase_at_step(s).name for s in range(plan.total_steps)]
    for phase in plan.phases:
        steps = batches[phase.start_step : phase.end_step]
        assert {b.phase for b in steps} == {phase.name}
        drawn = Counter(src for b in steps for src in b.sources)
        assert drawn == Counter({a.name: a.sequences for a in phase.sources if a.sequences})
    assert plan.phases[1].start_step == 12 and plan.phases[2].start_step == 18  # 60% / 90% of 20 steps
    assert "crawl-medium" not in {s for b in batches[18:] for s in b.sources}  # weight 0 in phase 3
    rows = loader.realised_rows()
    assert all(r["tokens"] == r["planned_tokens"] for r in rows)
    assert sum(r["tokens"] for r in rows) == plan.total_tokens
    with pytest.raises(Nano2Error, match="past its end"):
        loader.next_batch()


def test_every_prefix_of_a_phase_stays_within_one_sequence_of_its_share(token_root, plan):
    phase = plan.phases[0]
    counts: Counter = Counter()
    loader = MixtureLoader(plan, source_dirs(token_root, plan), seed=3)
    dealt = [r.source for _ in range(phase.steps) for r in loader.plan_step()[1]]
    for t, name in enumerate(dealt, start=1):
        counts[name] += 1
        for alloc in phase.sources:
            ideal = alloc.sequences * t / phase.sequences
            assert abs(counts[alloc.name] - ideal) < 1


def test_deterministic_in_the_seed(token_root, plan):
    dirs = source_dirs(token_root, plan)
    a = all_batches(MixtureLoader(plan, dirs, seed=5))
    b = all_batches(MixtureLoader(plan, dirs, seed=5))
    c = all_batches(MixtureLoader(plan, dirs, seed=6))
    assert all(np.array_equal(x.input_ids, y.input_ids) and x.sources == y.sources for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x.input_ids, z.input_ids) for x, z in zip(a, c, strict=True))
    assert [x.sources for x in a] == [z.sources for z in c]  # the seed orders documents, not the deal


def test_resumed_loader_reads_what_an_uninterrupted_one_reads(token_root, plan):
    dirs = source_dirs(token_root, plan)
    uninterrupted = MixtureLoader(plan, dirs, seed=9)
    full = all_batches(uninterrupted)
    first = MixtureLoader(plan, dirs, seed=9)
    for _ in range(13):  # past the first phase switch
        first.next_batch()
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON round trip, as in a checkpoint
    resumed = MixtureLoader(plan, dirs, seed=9)
    resumed.load_state_dict(state)
    rest = all_batches(resumed)
    assert len(rest) == plan.total_steps - 13
    for x, y in zip(full[13:], rest, strict=True):
        assert x.step == y.step and x.phase == y.phase and np.array_equal(x.input_ids, y.input_ids)
    assert resumed.realised_rows() == uninterrupted.realised_rows()
    with pytest.raises(Nano2Error, match="different plan"):
        MixtureLoader(compile_at(token_root, train_spec(steps=21)), dirs, seed=9).load_state_dict(state)
    with pytest.raises(Nano2Error, match="seed"):
        MixtureLoader(plan, dirs, seed=10).load_state_dict(state)


def test_ranks_read_disjoint_slices_of_the_same_global_batch(token_root, plan):
    dirs = source_dirs(token_root, plan)
    whole = all_batches(MixtureLoader(plan, dirs, seed=2))
    rank0 = all_batches(MixtureLoader(plan, dirs, seed=2), rank=0, world=2)
    rank1 = all_batches(MixtureLoader(plan, dirs, seed=2), rank=1, world=2)
    for w, r0, r1 in zip(whole, rank0, rank1, strict=True):
        assert np.array_equal(np.concatenate([r0.input_ids, r1.input_ids]), w.input_ids)
        assert r0.sources + r1.sources == w.sources and r0.global_counts == w.global_counts
    labels = whole[0].labels()
    assert np.array_equal(labels[:, :-1], whole[0].input_ids[:, 1:]) and (labels[:, -1] == IGNORE_INDEX).all()


def test_a_source_planned_for_one_and_a_half_epochs_is_read_once_then_half_again(tmp_path, tiny_tokenizer_dir):
    tok = ShardTokenizer(tiny_tokenizer_dir)
    texts = [d["text"] for d in repo_documents("mixtures", ".py", 8) if "</s>" not in d["text"]][:5]
    docs = [tuple(ids.tolist()) for ids in tok.encode_documents(texts)]
    writer = IndexedShardWriter(tmp_path / "small/part-0", np.uint16)
    for d in docs:
        writer.add_document(np.asarray(d))
    small_tokens = writer.close().tokens
    big = IndexedShardWriter(tmp_path / "big/part-0", np.uint16)
    for ids in tok.encode_documents([d["text"] for d in repo_documents("nano2", ".py", 10)]):
        big.add_document(ids)
    big.close()
    from nano2.manifest import OutputStats, write_manifest

    for name in ("small", "big"):
        total = sum(int(np.fromfile(p, dtype=np.uint16).size) for p in (tmp_path / name).glob("*.bin"))
        write_manifest(tmp_path / name, kind="tokens", name=name, command="test", stats=OutputStats(tokens=total))
    seq_len, batch = 32, 4
    small_sequences = (3 * small_tokens // 2) // seq_len  # about 1.5 epochs
    steps = small_sequences  # one small sequence per step: weight 1/4 of batch 4
    spec = {
        "name": "epochs",
        "seq_len": seq_len,
        "global_batch_size": batch,
        "total_tokens": seq_len * batch * steps,
        "sources": {"small": {"path": "small", "max_epochs": 2}, "big": {"path": "big", "max_epochs": 10}},
        "phases": [{"name": "only", "until": 1.0, "weights": {"small": 0.25, "big": 0.75}}],
    }
    plan = compile_at(tmp_path, spec)
    summary = next(s for s in plan.sources if s.name == "small")
    assert 1.0 < summary.epochs < 2.0
    loader = MixtureLoader(plan, source_dirs(tmp_path, plan), seed=4)
    stream = np.concatenate(
        [b.input_ids[i] for b in all_batches(loader) for i, s in enumerate(b.sources) if s == "small"]
    )
    assert stream.size == summary.planned_tokens
    first, second = stream[:small_tokens], stream[small_tokens:]

    def split(tokens):
        out, start = [], 0
        for i in np.flatnonzero(tokens == EOS):
            out.append(tuple(tokens[start : i + 1].tolist()))
            start = i + 1
        return out, tokens[start:]

    first_docs, rest = split(first)
    assert rest.size == 0 and sorted(first_docs) == sorted(docs)  # every document exactly once
    second_docs, _ = split(second)
    assert len(set(second_docs)) == len(second_docs) and set(second_docs) <= set(docs)  # no repeat within epoch 2
    assert second_docs != first_docs[: len(second_docs)] or len(second_docs) < 2  # a new order each epoch
    # the plan cannot be stretched past the shards: max_epochs is checked against what is on disk
    greedy = compile_at(tmp_path, {**spec, "sources": {**spec["sources"], "small": {"path": "small", "max_epochs": 2}}})
    greedy.sources[1].planned_tokens = 3 * small_tokens  # as if the plan were edited by hand
    with pytest.raises(Nano2Error, match="max_epochs 2 allows"):
        MixtureLoader(greedy, source_dirs(tmp_path, greedy))


def test_changed_data_and_missing_shards_are_clear_errors(token_root, plan, tmp_path):
    dirs = source_dirs(token_root, plan)
    stale = plan.model_copy(deep=True)
    stale.sources[0].available_tokens += 1
    with pytest.raises(Nano2Error, match="the data changed after the plan was compiled"):
        MixtureLoader(stale, dirs)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Nano2Error, match=r"no \.bin/\.idx shards"):
        MixtureLoader(plan, {**dirs, "code": empty})
    with pytest.raises(Nano2Error, match="no token directory"):
        MixtureLoader(plan, {k: v for k, v in dirs.items() if k != "code"})


def test_sequences_are_real_tokens_of_the_source(token_root, plan, tiny_tokenizer_dir):
    tok = load_tokenizer(tiny_tokenizer_dir)
    loader = MixtureLoader(plan, source_dirs(token_root, plan), seed=1, shuffle=False)
    batch = loader.next_batch()
    code_text = "".join(d["text"] for d in repo_documents("model", ".py", 6))
    for ids, source in zip(batch.input_ids, batch.sources, strict=True):
        if source == "code":
            assert tok.decode(ids.tolist()) in code_text  # unshuffled: a contiguous piece of the first file
            break
    else:
        pytest.fail("no code sequence in the first batch")


def test_read_ranges_name_exactly_the_documents_the_batches_were_cut_from(token_root, plan):
    """Independent reference: every sequence's tokens, matched document by document against the shards in the
    epoch's order, computed here with a per-token owner array (not the loader's search)."""
    loader = MixtureLoader(plan, source_dirs(token_root, plan), seed=5)
    all_batches(loader)
    rows = loader.read_ranges()
    assert sum(r["stream_tokens"][1] - r["stream_tokens"][0] for r in rows) == plan.total_tokens
    for source, stream in loader.streams.items():
        mine = [r for r in rows if r["source"] == source]
        # ranges of one source follow each other phase after phase, from 0
        assert mine[0]["stream_tokens"][0] == 0
        assert all(a["stream_tokens"][1] == b["stream_tokens"][0] for a, b in itertools.pairwise(mine))
        end = mine[-1]["stream_tokens"][1]
        owners = []  # (epoch, shard, document) of every stream token up to `end`
        shard_first = np.concatenate([[0], np.cumsum([s.documents for s in stream.shards])])
        epoch = 0
        while len(owners) < end:
            order = np.random.default_rng([5, _source_key(source), epoch]).permutation(len(stream.doc_lengths))
            for doc in order:
                shard = int(stream.doc_shards[doc])
                owners.extend([(epoch, shard, int(doc) - int(shard_first[shard]))] * int(stream.doc_lengths[doc]))
            epoch += 1
        for row in mine:
            start, stop = row["stream_tokens"]
            expected = list(dict.fromkeys(owners[start:stop]))  # touched documents, in reading order
            runs = row["document_runs"]
            got = [(e, s, d) for e, s, first, last in runs for d in range(first, last + 1)]
            assert got == expected and row["documents"] == len(expected)
            assert row["epochs"] == sorted({e for e, _, _ in expected})
