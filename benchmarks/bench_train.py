"""Pretraining throughput of the tiny 12B-shaped model on this CPU: trainer tokens/s and MFU, and the loader alone.

What it does, all in one temporary directory and one process:
1. Peak: the best fp32 FLOP/s of a large square matmul (torch.mm, 2 n^3 FLOPs) with the thread count training
   uses, measured now on this machine: the "peak" MFU divides by (no datasheet number exists for a shared VM).
2. Data: this repository's .py/.md files tokenized (byte-level BPE, vocab 4096) into three token shards, and a
   three-phase plan at the tiny config's shape (seq 256, global batch 8, micro-batch 4 x 2 accumulation steps).
3. Loader: `MixtureLoader.next_batch` over the whole plan (dealing, reading the memory-mapped shards, labels,
   torch tensors), tokens/s.
4. Trainer: `run_training` on tiny-12b for a few steps; tokens/s over the steps after the first two (warm-up).
   Model FLOPs per token = 6 x N (N = every parameter but the embedding table, which is a lookup) + the attention
   term 12 x n_attention_layers x heads x head_dim x seq_len (PaLM's formula, no causal discount). The Mamba scan's
   own FLOPs (SSD chunk matmuls) are not counted, so MFU is slightly understated.
Prints loader tokens/s / trainer tokens/s: the loader must never be the bottleneck (a ratio far above 1).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from bench_decode import ForeignCpu  # the same "how busy was the rest of the machine" measure

REPO = Path(__file__).resolve().parent.parent


def measure_peak_flops(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 FLOP/s of an n x n matmul over `repeats` runs (after one warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def build_data(root: Path) -> tuple[Path, Path]:
    """Tokenizer + three token sources from this repository's text; returns (tokenizer dir, tokens root)."""
    from model.tokenizer import save_tokenizer, train_bpe
    from train.tokenize import tokenize_inputs

    groups = {
        "docs": ("**/*.md", "**/*.yaml"),
        "python": ("mixtures/**/*.py", "model/**/*.py", "nano2/**/*.py", "train/**/*.py"),
        "more": ("curation/**/*.py", "tests/**/*.py"),
    }
    texts: list[str] = []
    for name, patterns in groups.items():
        rows = [
            {"text": p.read_text(errors="replace")}
            for pattern in patterns
            for p in sorted(REPO.glob(pattern))
            if ".venv" not in p.parts and "runs" not in p.parts
        ]
        texts += [r["text"] for r in rows]
        out = root / "corpus" / name / "part-0.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tokenizer = save_tokenizer(train_bpe(texts, vocab_size=4096), root / "tokenizer")
    inputs = [root / "corpus" / name for name in groups]
    tokenize_inputs(inputs, root / "tokens", tokenizer, data_root=root / "corpus", show_progress=False)
    return tokenizer, root / "tokens"


def spec(total_steps: int) -> dict:
    return {
        "name": "bench",
        "seq_len": 256,
        "global_batch_size": 8,
        "total_tokens": 256 * 8 * total_steps,
        "sources": {n: {"path": n, "max_epochs": 1000} for n in ("docs", "python", "more")},
        "phases": [
            {"name": "phase1", "until": 0.6, "weights": {"docs": 0.5, "python": 0.3, "more": 0.2}},
            {"name": "phase2", "until": 0.9, "weights": {"docs": 0.2, "python": 0.5, "more": 0.3}},
            {"name": "phase3", "until": 1.0, "weights": {"docs": 0.1, "python": 0.6, "more": 0.3}},
        ],
    }


def compile_at(root: Path, data: dict):
    from mixtures import compile_spec
    from mixtures.spec import MixtureSpec

    return compile_spec(MixtureSpec.model_validate(data), root)[1]


def loader_tokens_per_s(tokens_root: Path, steps: int) -> float:
    from mixtures.sources import resolve_source_path
    from train.data import MixtureLoader

    plan = compile_at(tokens_root, spec(steps))
    loader = MixtureLoader(plan, {s.name: resolve_source_path(tokens_root, s.origin) for s in plan.sources}, seed=0)
    start = time.perf_counter()
    for _ in range(plan.total_steps):
        batch = loader.next_batch()
        torch.from_numpy(batch.input_ids), torch.from_numpy(batch.labels())
    return plan.total_tokens / (time.perf_counter() - start)


def model_flops_per_token(seq_len: int) -> tuple[int, int]:
    """(6 x non-embedding parameters + attention term, parameters) of tiny-12b."""
    from model.configs import get_config
    from model.size import param_breakdown

    cfg = get_config("tiny-12b")
    parts = param_breakdown(cfg)
    dense = sum(parts.values()) - parts["embedding"]
    attention = 12 * cfg.counts()["attention"] * cfg.num_attention_heads * cfg.head_dim * seq_len
    return 6 * dense + attention, sum(parts.values())


def trainer_tokens_per_s(root: Path, tokenizer: Path, tokens_root: Path, steps: int) -> tuple[float, list[float]]:
    from train.config import TrainConfig
    from train.loop import run_training
    from train.plot import read_metrics

    (root / "spec.yaml").write_text(json.dumps(spec(steps)), encoding="utf-8")  # JSON is valid YAML
    cfg = TrainConfig.model_validate(
        {
            "name": "bench-train",
            "model": {"name": "tiny-12b"},
            "tokenizer": str(tokenizer),
            "data": {"spec": str(root / "spec.yaml"), "data_root": str(tokens_root)},
            "micro_batch_size": 4,
            "schedule": {"kind": "wsd", "lr": 2e-3, "min_lr": 2e-5, "warmup_steps": 2, "decay_fraction": 0.2},
            "device": "cpu",
            "plot": False,
        }
    )
    run_training(cfg, out_dir=root / "run", progress=False)
    records = read_metrics(root / "run" / "metrics.jsonl")
    timed = records[2:]  # the first steps pay one-time costs (allocator, kernels)
    tokens_per_step = records[1]["tokens"] - records[0]["tokens"]
    return len(timed) * tokens_per_step / sum(r["step_s"] for r in timed), [r["loss"] for r in records]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="trainer steps (the first two are not timed)")
    parser.add_argument("--loader-steps", type=int, default=2000, help="steps the loader deals and reads")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    foreign = ForeignCpu()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tokenizer, tokens_root = build_data(root)
        foreign.start()
        peak = measure_peak_flops()
        loader_tps = loader_tokens_per_s(tokens_root, args.loader_steps)
        trainer_tps, losses = trainer_tokens_per_s(root, tokenizer, tokens_root, args.steps)
        busy = foreign.percent()
    flops_per_token, params = model_flops_per_token(256)
    achieved = trainer_tps * flops_per_token
    print(f"torch {torch.__version__}, {threads} threads; tiny-12b: {params:,} parameters, seq 256, batch 8 (4 x 2)")
    print(f"model FLOPs/token      {flops_per_token:,} (6 x non-embedding params + attention term)")
    print(f"CPU peak (measured)    {peak / 1e9:.1f} GFLOP/s fp32 (best 2048^3 torch.mm, {threads} threads)")
    print(
        f"trainer                {trainer_tps:,.0f} tokens/s = {achieved / 1e9:.2f} GFLOP/s; MFU {achieved / peak:.1%}"
    )
    print(f"loader alone           {loader_tps:,.0f} tokens/s ({args.loader_steps} steps of 8 x 256)")
    print(f"loader / trainer       {loader_tps / trainer_tps:,.0f}x")
    print(f"losses                 {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} steps")
    print(f"(other processes used {'?' if busy is None else f'{busy:.0f}'}% of the machine meanwhile)")


if __name__ == "__main__":
    main()
