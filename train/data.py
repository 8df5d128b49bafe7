"""The mixture-driven loader: a compiled plan turned into the exact sequences a run reads, step by step.

Rules (what the tests hold it to):
- Each source is one endless stream: epoch e is every document of the source once, in an order drawn from
  (seed, source name, e), documents back to back (each already ends with EOS), cut into seq_len chunks
  (concat-and-chunk). A source's cursor only moves forward across phases, so a source planned for 1.5 epochs is
  read once fully and then half of a second permutation; reading past `planned tokens` is impossible (checked).
- Phase p's S sequences are dealt in a fixed order: sequence t goes to the source whose count lags its plan most,
  argmax_s n_s x (t + 1) - c_s x S (exact integers; ties to the first source by name). Every source stays within one
  sequence of its share at every point, and at the phase's end c_s == n_s exactly, for every source.
- Step k reads the global batch of sequences [k x B, (k + 1) x B) of the run; the phase switches at the plan's
  `start_step`. Each data-parallel rank reads its contiguous slice of the global batch, and every rank advances the
  same state, so the state saved by rank 0 resumes every rank.
- The state (next step, each source's stream offset, realised sequences per phase and source) is small and is saved
  in every checkpoint: a resumed loader yields exactly what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixtures.plan import PhasePlan, Plan
from nano2.contracts.chat import IGNORE_INDEX
from nano2.contracts.megatron import IndexedShard, find_shards
from nano2.errors import Nano2Error
from nano2.manifest import hash_config, recorded_path

MAX_RECORDED_RUNS = 10_000  # per phase and source, in a checkpoint manifest


def _source_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


class SourceStream:
    """One source's documents as an endless, epoch-wise shuffled token stream (see the module docstring)."""

    def __init__(self, name: str, shards: list[IndexedShard], seed: int, shuffle: bool = True):
        self.name = name
        self.shards = shards
        self.seed = seed
        self.shuffle = shuffle
        lengths, starts, owners = [], [], []
        for i, shard in enumerate(shards):
            lengths.append(shard.document_lengths())
            starts.append(shard.document_starts())
            owners.append(np.full(shard.documents, i, dtype=np.int32))
        self.doc_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        self.doc_starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
        self.doc_shards = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int32)
        self.tokens = int(self.doc_lengths.sum())
        if self.tokens == 0:
            raise Nano2Error(f"source {name!r}: its shards hold no tokens")
        self._epochs: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(document order, cumulative token offsets) of one epoch; the last two epochs are cached."""
        if epoch not in self._epochs:
            n = len(self.doc_lengths)
            if self.shuffle:
                order = np.random.default_rng([self.seed, _source_key(self.name), epoch]).permutation(n)
            else:
                order = np.arange(n)
            cumulative = np.concatenate([[0], np.cumsum(self.doc_lengths[order], dtype=np.int64)])
            self._epochs[epoch] = (order, cumulative)
            while len(self._epochs) > 2:
                self._epochs.popitem(last=False)
        return self._epochs[epoch]

    def read(self, offset: int, length: int) -> np.ndarray:
        """Tokens [offset, offset + length) of the stream."""
        out = np.empty(length, dtype=np.int64)
        filled = 0
        while filled < length:
            epoch, within = divmod(offset + filled, self.tokens)
            order, cumulative = self.epoch_order(epoch)
            j = int(np.searchsorted(cumulative, within, side="right")) - 1
            doc = int(order[j])
            skip = within - int(cumulative[j])
            take = min(length - filled, int(self.doc_lengths[doc]) - skip)
            shard = self.shards[int(self.doc_shards[doc])]
            start = int(self.doc_starts[doc]) + skip
            out[filled : filled + take] = shard.data[start : start + take]
            filled += take
        return out

    def documents_in(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """The documents stream tokens [start, end) touch, as (epoch, shard index, document index in that shard),
        in reading order: what a run that read that range trained on, exactly."""
        touched: list[tuple[int, int, int]] = []
        first_shard_doc = np.concatenate([[0], np.cumsum([s.documents for s in self.shards])])
        position = start
        while position < end:
            epoch, within = divmod(position, self.tokens)
            order, cumulative = self.epoch_order(epoch)
            j = int(np.searchsorted(cumulative, within, side="right")) - 1
            stop = min(end - epoch * self.tokens, self.tokens)  # within this epoch
            k = int(np.searchsorted(cumulative, stop, side="left"))  # documents j .. k-1 intersect [within, stop)
            for doc in order[j:k]:
                shard = int(self.doc_shards[doc])
                touched.append((epoch, shard, int(doc) - int(first_shard_doc[shard])))
            position = epoch * self.tokens + stop
        return touched


@dataclass(frozen=True)
class SequenceRef:
    """Where one training sequence comes from: a source and the offset of its first token in that source's stream."""

    source: str
    offset: int


@dataclass
class Batch:
    """One optimizer step's data for this rank: `input_ids` [n, seq_len] and where each row came from."""

    step: int
    phase: str
    input_ids: np.ndarray
    sources: list[str]
    global_counts: dict[str, int]  # sequences per source in the whole global batch

    def labels(self) -> np.ndarray:
        """Next-token targets aligned with input_ids: labels[:, t] = input_ids[:, t + 1], the last one ignored."""
        labels = np.full_like(self.input_ids, IGNORE_INDEX)
        labels[:, :-1] = self.input_ids[:, 1:]
        return labels


@dataclass
class LoaderState:
    step: int = 0
    offsets: dict[str, int] = field(default_factory=dict)
    realised: dict[str, dict[str, int]] = field(default_factory=dict)  # phase -> source -> sequences


def plan_fingerprint(plan: Plan) -> str:
    return hash_config(plan)


class MixtureLoader:
    """Draws exactly the plan's sequences per phase and source, deterministically from `seed`."""

    def __init__(
        self,
        plan: Plan,
        source_dirs: dict[str, Path],
        seed: int = 0,
        shuffle: bool = True,
        check_available: bool = True,
    ):
        self.plan = plan
        self.seed = seed
        self.seq_len = plan.seq_len
        self.batch_size = plan.global_batch_size
        planned = {s.name: s.planned_tokens for s in plan.sources}
        used = sorted(n for n, t in planned.items() if t > 0)
        missing = [n for n in used if n not in source_dirs]
        if missing:
            raise Nano2Error(f"source {missing[0]!r}: no token directory given for it")
        self.streams: dict[str, SourceStream] = {}
        for name in used:
            directory = Path(source_dirs[name])
            if not directory.is_dir():
                raise Nano2Error(f"source {name!r}: token directory {directory} not found")
            shards = find_shards(directory)
            if not shards:
                raise Nano2Error(f"source {name!r}: no .bin/.idx shards under {directory} (run `nano2 train tokenize`)")
            self.streams[name] = SourceStream(name, shards, seed, shuffle)
        summaries = {s.name: s for s in plan.sources}
        for name, stream in self.streams.items():
            summary = summaries[name]
            cap = int(summary.max_epochs * stream.tokens)
            if summary.planned_tokens > cap:
                raise Nano2Error(
                    f"source {name!r}: the plan reads {summary.planned_tokens:,} tokens but its shards hold "
                    f"{stream.tokens:,} (max_epochs {summary.max_epochs:g} allows {cap:,})"
                )
            if check_available and summary.origin != "declared" and summary.available_tokens != stream.tokens:
                raise Nano2Error(
                    f"source {name!r}: the plan counted {summary.available_tokens:,} tokens at {summary.origin} but "
                    f"the shards in {source_dirs[name]} hold {stream.tokens:,}: the data changed after the plan was "
                    "compiled; compile it again"
                )
        for phase in plan.phases:
            total = sum(a.sequences for a in phase.sources)
            if total != phase.sequences or phase.sequences != phase.steps * self.batch_size:
                raise Nano2Error(f"plan phase {phase.name!r}: its sequences do not add up; compile the plan again")
        self._planned_tokens = planned
        self.state = LoaderState(
            offsets=dict.fromkeys(self.streams, 0),
            realised={p.name: {a.name: 0 for a in p.sources if a.sequences} for p in plan.phases},
        )

    # -- dealing ------------------------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.plan.total_steps

    def phase_at(self, step: int) -> PhasePlan:
        return self.plan.phase_at_step(step)

    def _next_source(self, phase: PhasePlan) -> str:
        taken = self.state.realised[phase.name]
        t = sum(taken.values())
        best, best_lag = None, None
        for alloc in phase.sources:  # sorted by name in the plan
            if not alloc.sequences:
                continue
            lag = alloc.sequences * (t + 1) - taken[alloc.name] * phase.sequences
            if best_lag is None or lag > best_lag:
                best, best_lag = alloc.name, lag
        assert best is not None
        return best

    def plan_step(self) -> tuple[PhasePlan, list[SequenceRef]]:
        """Deal the next global batch (advancing the state) without reading any tokens."""
        step = self.state.step
        if step >= self.plan.total_steps:
            raise Nano2Error(f"the plan has {self.plan.total_steps} steps; step {step} is past its end")
        phase = self.phase_at(step)
        refs = []
        for _ in range(self.batch_size):
            name = self._next_source(phase)
            offset = self.state.offsets[name]
            if offset + self.seq_len > self._planned_tokens[name]:
                raise Nano2Error(f"source {name!r}: would read past its planned {self._planned_tokens[name]:,} tokens")
            refs.append(SequenceRef(name, offset))
            self.state.offsets[name] = offset + self.seq_len
            self.state.realised[phase.name][name] += 1
        self.state.step = step + 1
        return phase, refs

    def read(self, refs: list[SequenceRef]) -> np.ndarray:
        out = np.empty((len(refs), self.seq_len), dtype=np.int64)
        for i, ref in enumerate(refs):
            out[i] = self.streams[ref.source].read(ref.offset, self.seq_len)
        return out

    def next_batch(self, rank: int = 0, world_size: int = 1) -> Batch:
        """The next step's global batch, of which this rank reads its contiguous slice."""
        if self.batch_size % world_size:
            raise Nano2Error(f"global batch {self.batch_size} does not split over {world_size} ranks")
        step = self.state.step
        phase, refs = self.plan_step()
        per_rank = self.batch_size // world_size
        mine = refs[rank * per_rank : (rank + 1) * per_rank]
        counts: dict[str, int] = {}
        for ref in refs:
            counts[ref.source] = counts.get(ref.source, 0) + 1
        return Batch(step, phase.name, self.read(mine), [r.source for r in mine], counts)

    # -- accounting and state -----------------------------------------------------------------------------------
    def realised_rows(self) -> list[dict[str, Any]]:
        """Realised sequences and tokens per phase and source so far, as rows (for manifests and the audit)."""
        rows = []
        for phase in self.plan.phases:
            for alloc in phase.sources:
                n = self.state.realised[phase.name].get(alloc.name, 0)
                rows.append(
                    {
                        "phase": phase.name,
                        "source": alloc.name,
                        "sequences": n,
                        "tokens": n * self.seq_len,
                        "planned_tokens": alloc.tokens,
                    }
                )
        return rows

    def read_ranges(self) -> list[dict[str, Any]]:
        """Per phase and source, the stream token range read so far ([start, end): a source's cursor only moves
        forward, so phase p starts where the phases before it stopped), the shard files, and the documents that
        range touches as (epoch, shard, document) runs of consecutive indices. With the seed this is the exact
        answer to "which documents fed this checkpoint"."""
        rows = []
        cursor = dict.fromkeys(self.streams, 0)
        for phase in self.plan.phases:
            for name, sequences in sorted(self.state.realised.get(phase.name, {}).items()):
                if not sequences:
                    continue
                stream = self.streams[name]
                start, end = cursor[name], cursor[name] + sequences * self.seq_len
                cursor[name] = end
                docs = stream.documents_in(start, end)
                runs = _runs(docs)
                rows.append(
                    {
                        "phase": phase.name,
                        "source": name,
                        "stream_tokens": [start, end],
                        "epochs": sorted({e for e, _, _ in docs}),
                        "documents": len(docs),
                        "shards": [recorded_path(shard.prefix) for shard in stream.shards],
                        # at corpus scale the runs are left out; `documents_in` rebuilds them from the range and seed
                        **({"document_runs": runs} if len(runs) <= MAX_RECORDED_RUNS else {}),
                    }
                )
        return rows

    def state_dict(self) -> dict[str, Any]:
        return {
            "plan": plan_fingerprint(self.plan),
            "seed": self.seed,
            "step": self.state.step,
            "offsets": dict(self.state.offsets),
            "realised": {p: dict(s) for p, s in self.state.realised.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("plan") != plan_fingerprint(self.plan):
            raise Nano2Error("loader state was saved for a different plan; resume with the plan the run started with")
        if state.get("seed") != self.seed:
            raise Nano2Error(f"loader state was saved with seed {state.get('seed')}, not {self.seed}")
        if set(state["offsets"]) != set(self.state.offsets):
            raise Nano2Error("loader state names different sources than the plan")
        self.state = LoaderState(
            step=int(state["step"]),
            offsets={k: int(v) for k, v in state["offsets"].items()},
            realised={p: {k: int(v) for k, v in s.items()} for p, s in state["realised"].items()},
        )


def _runs(docs: list[tuple[int, int, int]]) -> list[list[int]]:
    """(epoch, shard, document) in reading order -> [epoch, shard, first, last] runs of consecutive documents."""
    runs: list[list[int]] = []
    for epoch, shard, doc in docs:
        if runs and runs[-1][0] == epoch and runs[-1][1] == shard and runs[-1][3] + 1 == doc:
            runs[-1][3] = doc
        else:
            runs.append([epoch, shard, doc, doc])
    return runs
