"""tiny-12b -> tiny-9b end to end on CPU: pretrain a parent, importance, search, prune, distil vs train from scratch.

The issue's bar: on held-out text, the distilled child recovers at least half of the gap between the pruned-only
child and the parent within a fixed token budget, and beats a child of the same shape trained from scratch on the
same tokens (same data order; the scratch child gets the parent's schedule, distillation a lower peak LR since it
starts from trained weights).

Data: real text from shared/data (GSM8K train questions + answers, the DCLM human-labelled web documents and the
CCNet head shards; see shared/data/SOURCES.md), 95% / 5% train / held-out split by document hash, a 4096-token
byte-level BPE trained on the train split. Everything is written under --out (default runs/bench/compress).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
SEQ_LEN, BATCH = 256, 8


def read_documents() -> list[str]:
    docs = []
    with gzip.open(SHARED / "evals" / "gsm8k_train.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs += [f"{r['question']}\n{r['answer']}" for r in map(json.loads, fh)]
    for name in (
        "quality/dclm_human_quality_labels_dev.jsonl",
        "web/ccnet_cc_en_head_0091.jsonl",
        "web/ccnet_cc_en_head_0174.jsonl",
    ):
        with open(SHARED / name, encoding="utf-8") as fh:
            docs += [r["text"] for r in map(json.loads, fh) if r.get("text", "").strip()]
    return docs


def prepare_data(out: Path) -> tuple[Path, Path, Path]:
    """Tokenizer, tokenized train / held-out roots with manifests, and a one-source mixture spec."""
    from model.tokenizer import save_tokenizer, train_bpe
    from nano2.manifest import write_manifest
    from train.tokenize import tokenize_inputs

    docs = read_documents()
    held = [d for d in docs if int(hashlib.sha1(d.encode()).hexdigest(), 16) % 20 == 0]
    train = [d for d in docs if int(hashlib.sha1(d.encode()).hexdigest(), 16) % 20 != 0]
    tok_dir = save_tokenizer(train_bpe(train, vocab_size=4096), out / "tokenizer")
    for split, rows in (("train", train), ("heldout", held)):
        folder = out / "docs" / split
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "part-0.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"text": t}) + "\n" for t in rows)
        write_manifest(folder, kind="documents", name=split, command="bench_compress", stats={"documents": len(rows)})
    tokenize_inputs(
        [out / "docs" / "train", out / "docs" / "heldout"],
        out / "tokens",
        tok_dir,
        out / "docs",
        overwrite=True,
        show_progress=False,
    )
    spec = {
        "name": "bench-compress",
        "seq_len": SEQ_LEN,
        "global_batch_size": BATCH,
        "total_tokens": "1M",
        "sources": {"text": {"path": "train", "max_epochs": 8}},
        "phases": [{"name": "all", "until": 1.0, "weights": {"text": 1.0}}],
    }
    spec_path = out / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return tok_dir, out / "tokens", spec_path


def train_settings(spec: Path, data_root: Path, tokens: int, tokenizer: Path, lr: float) -> dict:
    return {
        "data": {"spec": str(spec), "data_root": str(data_root), "total_tokens": tokens},
        "tokenizer": str(tokenizer),
        "micro_batch_size": BATCH,
        "schedule": {"kind": "wsd", "lr": lr, "min_lr": lr / 10, "warmup_fraction": 0.05, "decay_fraction": 0.2},
        "device": "cpu",
        "log_every": 5,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "compress")
    parser.add_argument("--parent-tokens", type=int, default=1_200_000)
    parser.add_argument("--kd-tokens", type=int, default=400_000, help="tokens for distillation and for scratch")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak LR of the parent and of the scratch child")
    parser.add_argument("--kd-lr", type=float, default=1e-3, help="peak LR of distillation (starts from weights)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids thrashing a shared CPU)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from compress.config import CompressConfig
    from compress.distill import distill_student, evaluate
    from compress.pipeline import run_search
    from compress.prune import load_shape, prune_checkpoint
    from model.io import build_model, load_checkpoint, load_config, quiet_transformers
    from model.size import total_params
    from nano2.config import validate_model
    from nano2.console import make_console
    from train.config import TrainConfig
    from train.loop import run_training

    quiet_transformers()
    torch.manual_seed(0)
    console = make_console()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def timed(name: str, fn):
        t0 = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - t0, 1)
        console.print(f"[bold]{name}[/]: {timings[name]:.0f}s")
        return result

    tok_dir, data_root, spec = timed("data", lambda: prepare_data(out))
    base = train_settings(spec, data_root, args.parent_tokens, tok_dir, args.lr)
    parent_cfg = validate_model({"name": "bench-parent", "model": {"name": "tiny-12b"}, **base}, TrainConfig, "bench")
    parent_dir = out / f"parent-{args.parent_tokens}"  # a finished parent of this budget is reused
    if not (parent_dir / "manifest.json").exists():
        shutil.rmtree(parent_dir, ignore_errors=True)
        timed("parent pretraining", lambda: run_training(parent_cfg, out_dir=parent_dir, progress=False))

    config = yaml.safe_load((REPO / "compress" / "configs" / "tiny.yaml").read_text())
    config.update(parent=str(parent_dir), output_dir=str(out / "compress"))
    config["calibration"].update(source=str(data_root / "train"), data_root=str(data_root))
    config["search"]["scoring"].update(method="proxy")
    config["distill"]["train"] = train_settings(spec, data_root, args.kd_tokens, tok_dir, args.kd_lr)
    cfg = CompressConfig.model_validate(config)
    search = timed("importance + search", lambda: run_search(cfg, "bench", console=console))
    ranked = sorted((c for c in search.candidates if c.rank is not None), key=lambda c: c.rank)
    console.print(
        "depth stage: "
        + ", ".join(f"{c.depth} layers -> {c.proxy_loss:.3f}" for c in search.candidates if c.stage == "depth")
        + f"; widths scored at depth {search.best_depth}: "
        + ", ".join(f"#{c.rank} h{c.hidden} f{c.ffn} m{c.mamba_heads} {c.params / 1e6:.2f}M" for c in ranked[:4])
    )
    child_dir = out / "compress" / "child"
    _, child_cfg = prune_checkpoint(
        parent_dir, load_shape(str(search.out_dir / "winner.yaml")), child_dir, out / "compress" / "importance"
    )
    heldout_windows = cfg.calibration.model_copy(update={"source": str(data_root / "heldout")})
    heldout = heldout_windows.load(child_cfg.vocab_size, samples=64, seq_len=SEQ_LEN, seed=123)
    teacher = load_checkpoint(parent_dir)
    losses = {
        "parent": evaluate(teacher, heldout, 16)["loss"],
        "pruned": evaluate(load_checkpoint(child_dir), heldout, 16)["loss"],
    }

    student = load_checkpoint(child_dir)
    for finished in ("distilled", "scratch"):
        shutil.rmtree(out / finished, ignore_errors=True)
    timed(
        "distillation",
        lambda: distill_student(
            student, teacher, cfg.distill, out / "distilled", name="bench-kd", tokenizer=tok_dir, progress=False
        ),
    )
    losses["distilled"] = evaluate(student, heldout, 16)["loss"]

    scratch_cfg = validate_model(
        {"name": "bench-scratch", **train_settings(spec, data_root, args.kd_tokens, tok_dir, args.lr)},
        TrainConfig,
        "bench",
    )
    scratch = build_model(load_config(child_dir), seed=1)
    timed("scratch training", lambda: run_training(scratch_cfg, model=scratch, out_dir=out / "scratch", progress=False))
    losses["scratch"] = evaluate(scratch, heldout, 16)["loss"]

    gap = losses["pruned"] - losses["parent"]
    recovered = (losses["pruned"] - losses["distilled"]) / gap if gap > 0 else float("nan")
    result = {
        "child": child_cfg.model_dump(mode="json"),
        "child_params": total_params(child_cfg),
        "parent_params": total_params(load_config(parent_dir)),
        "heldout_tokens": heldout.numel(),
        "parent_tokens": args.parent_tokens,
        "kd_tokens": args.kd_tokens,
        "lr": {"parent_and_scratch": args.lr, "distillation": args.kd_lr},
        "losses": losses,
        "recovered_fraction": recovered,
        "distilled_beats_scratch": losses["distilled"] < losses["scratch"],
        "seconds": timings,
    }
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    plot(out, losses)
    console.print(
        f"child {child_cfg.pattern} hidden {child_cfg.hidden_size} FFN {child_cfg.intermediate_size} Mamba heads "
        f"{child_cfg.mamba_num_heads}: {result['child_params']:,} of {result['parent_params']:,} parameters"
    )
    console.print(
        "held-out loss: "
        + ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
        + f"; distillation recovered {recovered:.1%} of the pruning gap in {args.kd_tokens:,} tokens; "
        + ("distilled beats scratch" if result["distilled_beats_scratch"] else "scratch is BETTER than distilled")
    )


def plot(out: Path, losses: dict[str, float]) -> None:
    """Training curves of distillation (its next-token loss) and scratch by tokens, and the held-out losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, key in (("distilled", "lm_loss"), ("scratch", "loss")):
        rows = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines() if x.strip()]
        left.plot([r["tokens"] for r in rows], [r[key] for r in rows], label=f"{name} (train next-token loss)")
    left.axhline(losses["parent"], color="black", linestyle="--", label="parent (held-out)")
    left.set_xlabel("tokens")
    left.set_ylabel("loss")
    left.legend(fontsize=8)
    bars = right.bar(list(losses), list(losses.values()), color=["black", "tab:red", "tab:green", "tab:blue"])
    right.bar_label(bars, fmt="%.4f", fontsize=8)
    low, high = min(losses.values()), max(losses.values())
    right.set_ylim(low - 0.25 * (high - low) - 0.01, high + 0.1 * (high - low) + 0.01)  # the gaps are small
    right.set_ylabel("held-out next-token loss")
    fig.suptitle("tiny-12b -> child: distillation vs training from scratch on the same tokens")
    fig.tight_layout()
    fig.savefig(out / "compress.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
