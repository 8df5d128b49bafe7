"""Tokenization throughput, tokens per CPU-second: `nano2 train tokenize`'s step vs datatrove's own Megatron step.

Both read the same JSONL artifact (the two CCNet samples of ../shared/data/web, repeated to a few MB of real
English text), tokenize with the same tokenizer file (a Nano 2-style byte-level BPE trained here on the samples, vocab
8192, EOS `</s>` after every document) in one
datatrove task, and write Megatron-style shards. CPU time is the whole process tree's (interpreter start-up and
imports included, which is why the corpus is made big enough to dominate), repeated, median and range; the
token counts of both sides must agree or the comparison is void.

    .venv/bin/python benchmarks/bench_tokenize.py [--copies 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cputime import compare, measure_python

SAMPLES = ("web/ccnet_cc_en_head_0091.jsonl", "web/ccnet_cc_en_head_0174.jsonl")


def sample_texts(shared: str) -> list[str]:
    texts = []
    for name in SAMPLES:
        with open(Path(shared) / name, encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for line in fh if line.strip()]
    return texts


def make_tokenizer(folder: str, shared: str) -> str:
    """A byte-level BPE with the Nano 2 special tokens (EOS `</s>`), as `model.tokenizer` trains them."""
    from model.tokenizer import save_tokenizer, train_bpe

    out = save_tokenizer(train_bpe(sample_texts(shared), vocab_size=8192), Path(folder) / "tokenizer")
    return str(out / "tokenizer.json")


def make_corpus(folder: str, shared: str, copies: int) -> int:
    """The CCNet samples' texts, `copies` times, as one JSONL file of {id, text} (the document contract's fields)."""
    texts = sample_texts(shared)
    out = Path(folder) / "corpus" / "web"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "part-0.jsonl", "w", encoding="utf-8") as fh:
        for copy in range(copies):
            for i, text in enumerate(texts):
                fh.write(json.dumps({"id": f"{copy}-{i}", "text": text}) + "\n")
    return copies * len(texts)


def ours(folder: str, tokenizer: str) -> int:
    from train.tokenize import tokenize_inputs

    out = Path(folder) / "ours"
    shutil.rmtree(out, ignore_errors=True)
    [report] = tokenize_inputs([Path(folder) / "corpus/web"], out, Path(tokenizer), data_root=Path(folder) / "corpus",
                               show_progress=False)  # fmt: skip
    return report.tokens


def datatrove_step(folder: str, tokenizer: str) -> int:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens.megatron_tokenizer import MegatronDocumentTokenizer

    out = Path(folder) / "datatrove"
    shutil.rmtree(out, ignore_errors=True)
    step = MegatronDocumentTokenizer(str(out / "shards"), tokenizer_name_or_path=tokenizer, eos_token="</s>")
    pipeline = [JsonlReader(str(Path(folder) / "corpus/web")), step]
    LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(out / "logs")).run()
    stats = json.loads((out / "logs" / "stats.json").read_text())
    return int(next(s for s in stats if "Writer" in s["name"])["stats"]["tokens"]["total"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shared = os.environ.get("NANO2_SHARED_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    folder = tempfile.mkdtemp(prefix="nano2-bench-tok-")
    try:
        tokenizer = make_tokenizer(folder, shared)
        documents = make_corpus(folder, shared, args.copies)
        size = (Path(folder) / "corpus/web/part-0.jsonl").stat().st_size / 2**20
        a = measure_python("bench_tokenize:ours", [folder, tokenizer], repeats=args.repeats, name="ours")
        b = measure_python("bench_tokenize:datatrove_step", [folder, tokenizer], repeats=args.repeats,
                           name="datatrove MegatronDocumentTokenizer")  # fmt: skip
        tokens = {r.result for r in a.runs} | {r.result for r in b.runs}
        if len(tokens) != 1:
            raise SystemExit(f"token counts differ between the two steps: {sorted(tokens)}")
        n = tokens.pop()
        print(f"{documents:,} documents, {size:.1f} MiB of JSONL, {n:,} tokens, 1 task, tokenizer {tokenizer}")
        for s in (a, b):
            rates = sorted(n / cpu for cpu in s.cpu)
            print(f"{s.name}: {n / s.median:,.0f} tokens/s/core (range {rates[0]:,.0f}-{rates[-1]:,.0f}, "
                  f"n={len(rates)}); CPU {s.describe()}")  # fmt: skip
        print(compare(a, b))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
