"""`nano2 eval throughput A B --cells 1k/8k,8k/16k`: output tokens/s of two models over input/output length cells.

The paper's throughput claim (up to 6.3x over Qwen3-8B at ISL 8k / OSL 16k) compares a hybrid with a transformer
at the same job: read ISL prompt tokens, write OSL tokens. Here A and B are checkpoint directories or named configs
(`nano2 model configs`; random weights, which decode exactly as fast as trained ones), e.g. a hybrid and a
transformer-only pattern built with `model/`.

Engines: `vllm` on a GPU machine (imported lazily; every request generates exactly OSL tokens with `ignore_eos`,
`batch` prompts per cell, and throughput is all output tokens over the wall time of the batch), and `local`, our
`FastDecoder` (`model.fast_decode.decode_greedy`: one prefill and OSL - 1 cached steps, prefill included in the
time). `auto` takes vLLM when it is installed and CUDA is available. Every model is warmed up once before its
cells are timed. Token values do not change decode cost, so prompts are random ids.

Output: `throughput.json` (per cell: tokens/s of each model and the A/B ratio), `throughput.png` (grouped bars
with the ratio above each cell) and a manifest (kind "eval-throughput").
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nano2.errors import Nano2Error

Engine = Literal["auto", "local", "vllm"]
THROUGHPUT_FILE, THROUGHPUT_PLOT = "throughput.json", "throughput.png"
PAPER_CELLS = "1k/1k,1k/8k,8k/16k"
_SIZE = re.compile(r"^\s*(\d+)\s*([kK]?)\s*$")


def parse_size(text: str) -> int:
    """'512' -> 512, '8k' -> 8192 (k = 1024, as ISL/OSL are quoted)."""
    match = _SIZE.match(text)
    if not match or int(match.group(1)) < 1:
        raise Nano2Error(f"bad token count {text!r}: expected a positive number, optionally with k (e.g. 8k)")
    return int(match.group(1)) * (1024 if match.group(2) else 1)


def parse_cells(text: str) -> list[tuple[int, int]]:
    """'1k/1k,8k/16k' -> [(1024, 1024), (8192, 16384)]."""
    cells = []
    for part in (p for p in text.split(",") if p.strip()):
        if part.count("/") != 1:
            raise Nano2Error(f"bad cell {part!r}: expected ISL/OSL, e.g. 1k/8k")
        isl, osl = part.split("/")
        cells.append((parse_size(isl), parse_size(osl)))
    if not cells:
        raise Nano2Error("--cells: give at least one ISL/OSL cell, e.g. 1k/1k,8k/16k")
    return cells


class ForeignCpu:
    """Share of the machine's CPU time used by *other* processes since `start()` (Linux /proc; None elsewhere).

    On a shared machine another job stalls every multi-threaded op here, so each cell records how busy the rest of
    the machine was while it ran.
    """

    def __init__(self) -> None:
        self._start: tuple[int, int, int] | None = None

    @staticmethod
    def _sample() -> tuple[int, int, int] | None:
        try:
            with open("/proc/stat") as f:
                values = [int(v) for v in f.readline().split()[1:9]]
            with open("/proc/self/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        busy = sum(values) - values[3] - values[4]  # all but idle and iowait
        return busy, sum(values), int(fields[11]) + int(fields[12])  # machine busy, machine total, ours

    def start(self) -> None:
        self._start = self._sample()

    def percent(self) -> float | None:
        end = self._sample()
        if self._start is None or end is None or end[1] <= self._start[1]:
            return None
        busy, total, ours = (e - s for e, s in zip(end, self._start, strict=True))
        return max(0.0, 100.0 * (busy - ours) / total)


@dataclass
class ModelUnderTest:
    source: str
    label: str
    pattern: str
    parameters: int
    checkpoint: Path | None  # None for a named config (random weights)
    info: dict[str, Any] = field(default_factory=dict)


def describe_model(source: str, label: str) -> ModelUnderTest:
    from model.io import load_config
    from model.size import total_params

    path = Path(source)
    if not path.is_dir():
        from model.configs import NAMED_CONFIGS

        if source not in NAMED_CONFIGS:
            raise Nano2Error(
                f"{source}: neither a checkpoint directory nor a named config ({', '.join(NAMED_CONFIGS)})"
            )
    cfg = load_config(source)
    return ModelUnderTest(source, label, cfg.pattern, total_params(cfg), path if path.is_dir() else None)


def _load_torch_model(model: ModelUnderTest, dtype: str, device: str):
    from model.io import build_model, load_checkpoint, load_config

    if model.checkpoint is not None:
        return load_checkpoint(model.checkpoint, dtype=dtype, device=device)
    return build_model(load_config(model.source), seed=0, dtype=dtype).to(device).eval()


def random_prompts(batch: int, isl: int, vocab: int, seed: int = 0):
    """Random prompt ids (avoiding the first 16 ids, where the special tokens live)."""
    import torch

    generator = torch.Generator().manual_seed(seed * 1_000_003 + isl)
    return torch.randint(16, vocab, (batch, isl), generator=generator)


def local_tokens_per_s(model, isl: int, osl: int, batch: int = 1, compile: bool = False) -> float:
    """Output tokens/s of `FastDecoder` greedy decoding: prefill (first token) + OSL - 1 steps, wall clock."""
    import torch

    from model.fast_decode import FastDecoder, decode_greedy

    decoder = FastDecoder(model, max_batch=batch, max_len=isl + osl, compile=compile)
    prompts = random_prompts(batch, isl, decoder.vocab_size)
    sync = torch.cuda.synchronize if decoder.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    out = decode_greedy(decoder, prompts, osl)
    sync()
    elapsed = time.perf_counter() - start
    if out.shape != (batch, isl + osl):
        raise Nano2Error(f"decode produced {tuple(out.shape)} ids, expected {(batch, isl + osl)}")
    return batch * osl / elapsed


def _local_engine(
    model: ModelUnderTest, cells, batch: int, dtype: str, compile: bool, repeats: int, progress
) -> list[float]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_model = _load_torch_model(model, dtype, device)
    local_tokens_per_s(torch_model, 16, 8, batch, compile)  # warm-up: thread pools, allocator, compile
    rates = []
    for isl, osl in cells:
        rates.append(
            statistics.median(local_tokens_per_s(torch_model, isl, osl, batch, compile) for _ in range(repeats))
        )
        progress(model.label, isl, osl)
    return rates


def _vllm_engine(
    model: ModelUnderTest, cells, batch: int, dtype: str, options: dict[str, Any], repeats: int, progress
) -> list[float]:
    try:
        import vllm
    except ImportError:
        raise Nano2Error("engine vllm: the vllm package is not installed (GPU machines: pip install vllm)") from None
    with tempfile.TemporaryDirectory() as scratch:
        path = model.checkpoint
        if path is None:  # a named config: save random weights so vLLM can load them
            from model.io import build_model, load_config, save_checkpoint

            path = save_checkpoint(
                build_model(load_config(model.source), seed=0), Path(scratch) / model.label, load_config(model.source)
            )
        longest = max(isl + osl for isl, osl in cells)
        llm = vllm.LLM(
            model=str(path),
            dtype="bfloat16" if dtype in ("bf16", "bfloat16") else "float32",
            max_model_len=longest + 8,
            skip_tokenizer_init=True,
            seed=0,
            **options,
        )
        vocab = llm.llm_engine.model_config.get_vocab_size()

        def run(isl: int, osl: int) -> float:
            prompts = [{"prompt_token_ids": row.tolist()} for row in random_prompts(batch, isl, vocab)]
            params = vllm.SamplingParams(
                max_tokens=osl, min_tokens=osl, ignore_eos=True, temperature=0.0, detokenize=False
            )
            start = time.perf_counter()
            outputs = llm.generate(prompts, params, use_tqdm=False)
            elapsed = time.perf_counter() - start
            return sum(len(o.outputs[0].token_ids) for o in outputs) / elapsed

        run(16, 8)  # warm-up: CUDA graphs, allocator
        rates = []
        for isl, osl in cells:
            rates.append(statistics.median(run(isl, osl) for _ in range(repeats)))
            progress(model.label, isl, osl)
    return rates


def pick_engine(engine: Engine) -> str:
    if engine != "auto":
        return engine
    import importlib.util

    import torch

    return "vllm" if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available() else "local"


def _labels(sources: Sequence[str]) -> list[str]:
    names = [Path(s).name or s for s in sources]
    if len(set(names)) < len(names):
        names = [f"{tag}:{name}" for tag, name in zip("AB", names, strict=False)]
    return names


def run_throughput(
    model_a: str,
    model_b: str,
    cells: Sequence[tuple[int, int]],
    output: str | Path,
    engine: Engine = "auto",
    batch: int = 1,
    dtype: str = "fp32",
    compile: bool = False,
    vllm_options: dict[str, Any] | None = None,
    repeats: int = 1,
    threads: int | None = None,
    on_cell: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Measure both models on every cell (median of `repeats`); write throughput.json, throughput.png, manifest.

    `threads` sets torch's CPU threads for the local engine (restored afterwards).
    """
    from evals.run import torch_threads

    if batch < 1 or repeats < 1:
        raise Nano2Error(f"--batch and --repeats must be >= 1, got {batch} and {repeats}")
    chosen = pick_engine(engine)
    models = [
        describe_model(s, label) for s, label in zip((model_a, model_b), _labels((model_a, model_b)), strict=True)
    ]
    progress = on_cell or (lambda label, isl, osl: None)
    foreign = ForeignCpu()
    foreign.start()
    rates: dict[str, list[float]] = {}
    for model in models:
        if chosen == "vllm":
            options = dict(vllm_options or {})
            rates[model.label] = _vllm_engine(model, cells, batch, dtype, options, repeats, progress)
        else:
            with torch_threads(threads):
                rates[model.label] = _local_engine(model, cells, batch, dtype, compile, repeats, progress)
    a, b = (m.label for m in models)
    result = {
        "engine": chosen,
        "batch": batch,
        "dtype": dtype,
        "compile": compile if chosen == "local" else None,
        "threads": threads if chosen == "local" else None,
        "repeats": repeats,
        "models": [
            {"label": m.label, "source": m.source, "pattern": m.pattern, "parameters": m.parameters} for m in models
        ],
        "cells": [
            {
                "isl": isl,
                "osl": osl,
                "tokens_per_s": {m.label: rates[m.label][i] for m in models},
                "ratio": rates[a][i] / rates[b][i],
            }
            for i, (isl, osl) in enumerate(cells)
        ],
        "ratio_of": f"{a} / {b}",
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "foreign_cpu_percent": foreign.percent(),
        },
    }
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / THROUGHPUT_FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot_throughput(result, out / THROUGHPUT_PLOT)
    _write_manifest(out, models, result)
    return result


def plot_throughput(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [m["label"] for m in result["models"]]
    cells = result["cells"]
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(cells) + 2), 4.5))
    width = 0.38
    for index, label in enumerate(labels):
        xs = [x + (index - 0.5) * width for x in range(len(cells))]
        ax.bar(xs, [c["tokens_per_s"][label] for c in cells], width, label=label)
    for x, cell in enumerate(cells):
        top = max(cell["tokens_per_s"].values())
        ax.annotate(f"{cell['ratio']:.2f}x", (x, top), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(cells)), [f"{c['isl']}/{c['osl']}" for c in cells])
    ax.set_xlabel("input / output tokens")
    ax.set_ylabel("output tokens/s")
    ax.set_title(
        f"Throughput ({result['engine']}, batch {result['batch']}, {result['dtype']}); ratios: {result['ratio_of']}"
    )
    ax.legend(fontsize=8)
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _write_manifest(out: Path, models: Sequence[ModelUnderTest], result: dict[str, Any]) -> None:
    from nano2.manifest import current_command, input_ref, write_manifest

    write_manifest(
        out,
        kind="eval-throughput",
        name=" vs ".join(m.label for m in models),
        command=current_command(),
        config={k: result[k] for k in ("engine", "batch", "dtype", "compile", "threads", "repeats")}
        | {"models": [m.source for m in models], "cells": [[c["isl"], c["osl"]] for c in result["cells"]]},
        inputs=[input_ref(m.checkpoint) for m in models if m.checkpoint is not None],
        extra={"cells": result["cells"], "machine": result["machine"]},
    )
