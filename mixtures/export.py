"""Exports of a compiled plan for trainers: Megatron-LM blends per phase, and the plan JSON for train/.

Megatron-LM has no notion of phases: a phased run is one run per phase, each resumed from the previous
checkpoint with `--train-iters <end_step>` and that phase's blend. With `--data-path w1 p1 w2 p2 ...` Megatron
normalises the weights and, for a known number of samples, draws each dataset's share of them; we write the
plan's exact realised shares (sequences / phase sequences) so that normalisation changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from mixtures.plan import Plan
from mixtures.sources import resolve_source_path
from mixtures.spec import MixtureSpec
from nano2.contracts.megatron import find_shards

DEFAULT_PREFIX_TEMPLATE = "{source}/{source}_text_document"


@dataclass(frozen=True)
class MegatronShard:
    prefix: str  # path without the .bin/.idx suffix
    tokens: int


def find_megatron_shards(directory: Path) -> list[MegatronShard]:
    """All .idx/.bin pairs under a source directory, sorted by path: the contract's `find_shards` (one finder, so
    an .idx without its .bin is the same clear error here as in training), as Megatron data-path entries."""
    return [MegatronShard(prefix=str(shard.prefix), tokens=shard.tokens) for shard in find_shards(directory)]


def _share_text(share: Fraction) -> str:
    return repr(float(share))


def megatron_blends(
    plan: Plan,
    spec: MixtureSpec,
    data_root: str | Path = ".",
    prefix_template: str = DEFAULT_PREFIX_TEMPLATE,
) -> list[dict]:
    """Per phase: its steps, samples and the `--data-path` list (weight, prefix, weight, prefix, ...)."""
    root = Path(data_root)
    shard_cache: dict[str, list[MegatronShard]] = {}
    out = []
    for phase in plan.phases:
        data_path: list[str] = []
        for alloc in phase.sources:
            if alloc.sequences == 0:
                continue
            share = Fraction(alloc.sequences, phase.sequences)
            source = spec.sources[alloc.name]
            shards: list[MegatronShard] = []
            if source.path is not None:
                if alloc.name not in shard_cache:
                    shard_cache[alloc.name] = find_megatron_shards(resolve_source_path(root, source.path))
                shards = shard_cache[alloc.name]
            if shards:
                total = sum(s.tokens for s in shards)
                for shard in shards:
                    if shard.tokens:
                        data_path += [_share_text(share * Fraction(shard.tokens, total)), shard.prefix]
            else:
                prefix = prefix_template.format(source=alloc.name, data_root=str(root))
                data_path += [_share_text(share), prefix]
        out.append(
            {
                "phase": phase.name,
                "start_step": phase.start_step,
                "train_iters": phase.end_step,
                "train_samples": phase.end_step * plan.global_batch_size,
                "phase_samples": phase.sequences,
                "seq_length": plan.seq_len,
                "global_batch_size": plan.global_batch_size,
                "data_path": data_path,
                "sequences": {a.name: a.sequences for a in phase.sources if a.sequences},
            }
        )
    return out


def export_megatron(
    plan: Plan,
    spec: MixtureSpec,
    out_dir: str | Path,
    data_root: str | Path = ".",
    prefix_template: str = DEFAULT_PREFIX_TEMPLATE,
) -> list[Path]:
    """Write, per phase, a `--data-args-path` text file and a `--per-split-data-args-path` JSON, plus a summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    blends = megatron_blends(plan, spec, data_root, prefix_template)
    for i, blend in enumerate(blends, start=1):
        stem = f"{i:02d}-{blend['phase']}"
        args_file = out / f"{stem}.data-args.txt"
        args_file.write_text(" ".join(blend["data_path"]) + "\n", encoding="utf-8")
        split_file = out / f"{stem}.per-split.json"
        # valid/test reuse the training blend; point them at held-out shards for real evaluation.
        split_file.write_text(
            json.dumps({k: blend["data_path"] for k in ("train", "valid", "test")}, indent=2) + "\n",
            encoding="utf-8",
        )
        written += [args_file, split_file]
    summary = out / "megatron-phases.json"
    summary.write_text(json.dumps({"plan": plan.name, "phases": blends}, indent=2) + "\n", encoding="utf-8")
    written.append(summary)
    return written
