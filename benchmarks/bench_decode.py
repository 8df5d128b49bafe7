"""Decode throughput of a tiny Nano-2-style hybrid vs a pure-attention transformer of the same size, on this machine.

Both models are NemotronH checkpoints built by the same library (random weights, seed 0, fp32, batch 1, vocab
4096): the hybrid has hidden 256 and 16 blocks, 7 Mamba-2 + 7 MLP + 2 attention placed by `place_attention`; the
transformer repeats attention+MLP ("*-") at the same depth and hidden size, with the MLP width chosen so the
parameter counts agree (both are printed). Attention heads (8 query, 2 KV, head_dim 32) are the same in both.

For each (ISL, OSL) cell: output tokens per second, prefill included (OSL / (prefill + OSL - 1 steps)), with our
`FastDecoder` and with plain `model.generate(do_sample=False, min_new_tokens=OSL, max_new_tokens=OSL)`. Then
per-token decode time vs position, split by layer kind, to show where the time goes as the context grows.

Run: `python benchmarks/bench_decode.py [--quick] [--plot decode.png] [--no-compile]`.

Equal memory (`--equal-memory GIB`), the paper's measurement: for each ISL/OSL cell each model runs at the largest
batch whose weights + KV cache + Mamba conv window + SSM state (fp32) fit GIB, computed with
`model.size.max_batch` and checked against the bytes the decoder really allocated (`FastDecoder.memory_bytes`).
Output tokens/s = batch x OSL / (prefill + decode). To finish on a 2-core machine, both parts are timed on samples
at the real batch and cache length, and the method is printed with the table:
  * prefill: `--prefill-rows` prompts of ISL tokens are prefilled for real and the time scaled to the batch (prefill
    is compute-bound, linear in the number of prompts);
  * decode: at `--probes` cache lengths spread over ISL..ISL+OSL-1, `--steps` steps of the whole batch are timed
    (median) after one warm-up; the OSL - 1 steps' total is the trapezoid over those lengths (a step's cost is
    linear in the cache length). The decoder jumps between lengths with `FastDecoder.seek`: a step costs the same
    whatever values the cache holds.
A per-layer profile (each layer's share of one step at the longest probe) says where the time goes. The ratio at
the last cell (8k/16k by default) is printed last.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from dataclasses import dataclass, field

import torch

from evals.throughput import ForeignCpu, parse_cells
from model.configs import HybridConfig, place_attention, to_hf_config
from model.fast_decode import KIND_NAMES, FastDecoder, per_token_times
from model.size import GIB, inference_memory, max_batch, param_breakdown

FULL_GRID = [(128, 128), (1024, 1024), (1024, 8192), (8192, 16384)]
QUICK_GRID = [(128, 128), (1024, 256)]
FULL_POSITIONS = [1024, 4096, 8192, 16384]
QUICK_POSITIONS = [256, 1024]
# The transformers-generate baseline is slow: ~11 ms per hybrid token, and for the transformer its DynamicCache
# concatenates K/V at every step, so its cost grows with the output (23 tokens/s over 1k/8k in one run here: ~6
# minutes for that cell alone). Above these output lengths the baseline is skipped ("-"), and the output says so.
BASELINE_MAX_OSL = {"hybrid": 8192, "transformer": 1024}
GOAL_RATIO, GOAL_SPEEDUP = 4.0, 3.0
EQUAL_MEMORY_CELLS = "1k/1k,8k/16k"
EQUAL_MEMORY_GOALS = {(1024, 1024): 1.0, (8192, 16384): 4.0}

ATTENTION = dict(num_attention_heads=8, num_key_value_heads=2, head_dim=32)
MAMBA = dict(mamba_num_heads=8, mamba_head_dim=64, ssm_state_size=64, n_groups=2, conv_kernel=4, chunk_size=128)
COMMON = dict(hidden_size=256, vocab_size=4096, max_position_embeddings=65536, **ATTENTION, **MAMBA)


def hybrid_config() -> HybridConfig:
    """hidden 256, 16 blocks: "M-" x 7 with 2 attention layers placed as Megatron places them."""
    return HybridConfig(name="hybrid", pattern=place_attention("M-" * 7, 2), intermediate_size=1536, **COMMON)


def transformer_config(target: int) -> HybridConfig:
    """ "*-" x 8 (same depth) with the MLP width (a multiple of 64) whose parameter count is closest to `target`."""

    def make(width: int) -> HybridConfig:
        return HybridConfig(name="transformer", pattern="*-" * 8, intermediate_size=width, **COMMON)

    return min((make(w) for w in range(64, 8192, 64)), key=lambda c: abs(sum(param_breakdown(c).values()) - target))


def build(cfg: HybridConfig, dtype: torch.dtype = torch.float32, device: str = "cpu") -> torch.nn.Module:
    from transformers import NemotronHForCausalLM

    torch.manual_seed(0)
    return NemotronHForCausalLM(to_hf_config(cfg)).eval().to(device=device, dtype=dtype)


def model_pair() -> dict[str, HybridConfig]:
    """The hybrid and the transformer with the same parameter count and depth (see the module docstring)."""
    hybrid = hybrid_config()
    return {"hybrid": hybrid, "transformer": transformer_config(sum(param_breakdown(hybrid).values()))}


# ----------------------------------------------------------------------------------------------- equal memory
@dataclass
class EqualMemoryRun:
    """One model in one cell at the largest batch that fits the budget."""

    name: str
    isl: int
    osl: int
    batch: int
    estimated_bytes: int  # model.size.inference_memory at ISL + OSL tokens
    measured_bytes: int  # FastDecoder.memory_bytes(): what the decoder allocated
    prefill_s: float  # scaled to the batch from `prefill_rows` real prompts
    prefill_rows: int
    probe_positions: list[int]
    probe_step_s: list[float]  # median wall seconds of one whole-batch step at each probe
    probe_step_range: list[tuple[float, float]]
    decode_s: float  # the OSL - 1 steps, trapezoid over the probes
    decode_cpu_s: float  # the same in this process's CPU seconds (all threads)
    layer_ms: list[float] = field(default_factory=list)  # per layer at the longest probe (median)
    other_ms: float = 0.0
    kinds: list[str] = field(default_factory=list)

    @property
    def output_tokens_per_s(self) -> float:
        return self.batch * self.osl / (self.prefill_s + self.decode_s)

    @property
    def decode_tokens_per_s(self) -> float:
        return self.batch * (self.osl - 1) / self.decode_s

    @property
    def decode_tokens_per_cpu_s(self) -> float:
        return self.batch * (self.osl - 1) / self.decode_cpu_s


def probe_positions(isl: int, osl: int, probes: int) -> list[int]:
    """`probes` cache lengths evenly spread from ISL (the first step) to ISL + OSL - 2 (the last)."""
    last = isl + osl - 2
    if probes < 2 or last <= isl:
        return [isl]
    return sorted({round(isl + i * (last - isl) / (probes - 1)) for i in range(probes)})


def trapezoid_total(positions: list[int], seconds: list[float], first: int, last: int) -> float:
    """Sum of the step times at every cache length first..last, a step's time linear between the probes."""
    if len(positions) == 1:
        return seconds[0] * (last - first + 1)
    total = 0.0
    for i in range(len(positions) - 1):
        total += (positions[i + 1] - positions[i]) * (seconds[i] + seconds[i + 1]) / 2
    return total + (seconds[0] + seconds[-1]) / 2  # the trapezoid counts the end points half each


def run_equal_memory(
    name: str,
    cfg: HybridConfig,
    model: torch.nn.Module,
    isl: int,
    osl: int,
    budget_bytes: int,
    dtype: str = "fp32",
    steps: int = 3,
    probes: int = 5,
    prefill_rows: int = 2,
    compile: bool = True,
    profile_steps: int = 3,
) -> EqualMemoryRun:
    """Time `model` at the largest batch whose inference memory at ISL + OSL fits `budget_bytes`."""
    batch = max_batch(cfg, isl + osl, budget_bytes, dtype)
    if batch < 1:
        raise ValueError(f"{name}: not even one sequence of {isl + osl} tokens fits {budget_bytes / GIB:.2f} GiB")
    estimate = inference_memory(cfg, isl + osl, batch, dtype).total
    decoder = FastDecoder(model, max_batch=batch, max_len=isl + osl, compile=compile)
    measured = sum(decoder.memory_bytes().values())
    if measured > budget_bytes:
        raise ValueError(
            f"{name}: the decoder allocated {measured / GIB:.3f} GiB for batch {batch}, over the "
            f"{budget_bytes / GIB:.3f} GiB budget (model.size estimated {estimate / GIB:.3f} GiB)"
        )
    sync = torch.cuda.synchronize if decoder.device.type == "cuda" else (lambda: None)
    rows = min(batch, prefill_rows)
    ids = torch.randint(3, cfg.vocab_size, (rows, isl), generator=torch.Generator().manual_seed(isl))
    decoder.prefill(ids[:, : min(isl, 16)])  # warm-up: one-time costs stay out of the timed prefill
    sync()
    start = time.perf_counter()
    token = decoder.prefill(ids, row_chunk=1).argmax(-1)
    sync()
    prefill_s = (time.perf_counter() - start) * batch / rows
    token = token[:1].expand(batch).contiguous()

    positions = probe_positions(isl, osl, probes)
    medians, ranges, cpu = [], [], []
    for pos in positions:
        decoder.seek(pos, batch)
        decoder.step(token)  # warm-up (and torch.compile for this batch size, the first time)
        decoder.seek(pos, batch)
        wall = []
        cpu_start = time.process_time()
        for _ in range(steps):
            decoder.seek(pos, batch)  # every timed step runs at this cache length
            sync()
            t = time.perf_counter()
            decoder.step(token)
            sync()
            wall.append(time.perf_counter() - t)
        cpu.append((time.process_time() - cpu_start) / steps)
        medians.append(statistics.median(wall))
        ranges.append((min(wall), max(wall)))
    first, last = isl, isl + osl - 2
    decode_s = trapezoid_total(positions, medians, first, last)
    decode_cpu_s = trapezoid_total(positions, cpu, first, last)

    per_layer: list[list[float]] = []
    others = []
    for _ in range(profile_steps):
        decoder.seek(positions[-1], batch)
        layers, other = decoder.step_layer_times(token)
        per_layer.append(layers)
        others.append(other)
    layer_ms = [1e3 * statistics.median(col) for col in zip(*per_layer, strict=True)]
    run = EqualMemoryRun(
        name, isl, osl, batch, estimate, measured, prefill_s, rows, positions, medians, ranges, decode_s,
        decode_cpu_s, layer_ms, 1e3 * statistics.median(others), list(decoder.kinds),
    )  # fmt: skip
    del decoder
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return run


def print_layer_profile(runs: list[EqualMemoryRun]) -> None:
    """Each model's step at its longest probe, layer by layer: ms and share of the step."""
    print(
        f"\nper-layer profile at {runs[0].isl}/{runs[0].osl}, cache length {runs[0].probe_positions[-1]} "
        "(median of the profiled steps; each layer timed on its own, so the sum exceeds a plain step slightly)"
    )
    header = " | ".join(f"{r.name} (batch {r.batch})".center(26) for r in runs)
    print(f"{'layer':>5} | {header}")
    for i in range(max(len(r.layer_ms) for r in runs)):
        cells = []
        for r in runs:
            total = sum(r.layer_ms) + r.other_ms
            if i < len(r.layer_ms):
                cells.append(f"{KIND_NAMES[r.kinds[i]]:>9} {r.layer_ms[i]:8.2f} ms {100 * r.layer_ms[i] / total:4.1f}%")
            else:
                cells.append(" " * 26)
        print(f"{i:>5} | {' | '.join(cells)}")
    shares = [100 * r.other_ms / (sum(r.layer_ms) + r.other_ms) for r in runs]
    print(
        f"{'other':>5} | "
        + " | ".join(f"{'emb+head':>9} {r.other_ms:8.2f} ms {s:4.1f}%" for r, s in zip(runs, shares, strict=True))
    )
    for r in runs:
        total = sum(r.layer_ms) + r.other_ms
        by_kind: dict[str, float] = {}
        for kind, ms in zip(r.kinds, r.layer_ms, strict=True):
            by_kind[KIND_NAMES[kind]] = by_kind.get(KIND_NAMES[kind], 0.0) + ms
        parts = ", ".join(f"{k} {v:.1f} ms ({100 * v / total:.0f}%)" for k, v in by_kind.items())
        print(f"  {r.name}: step {total:.1f} ms = {parts}, other {r.other_ms:.1f} ms")


def equal_memory_main(args: argparse.Namespace) -> list[tuple[int, int, float]]:
    """The equal-memory table; returns (ISL, OSL, hybrid/transformer output tokens/s) per cell."""
    budget = int(args.equal_memory * GIB)
    configs = model_pair()
    models = {name: build(cfg) for name, cfg in configs.items()}
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    compile = not args.no_compile
    print(
        f"equal memory: {args.equal_memory:g} GiB for weights + KV cache + Mamba conv window + SSM state, fp32, CPU, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f}"
    )
    for name, cfg in configs.items():
        print(f"  {name:<11} {cfg.pattern}  intermediate {cfg.intermediate_size}  {counts[name]:,} params")
    print(
        f"method: prefill timed on {args.prefill_rows} real prompt(s) and scaled to the batch; decode timed as "
        f"{args.steps} whole-batch steps (median, after a warm-up) at {args.probes} cache lengths from ISL to "
        f"ISL+OSL-2, summed over the OSL-1 steps by the trapezoid rule; torch.compile {'on' if compile else 'off'}"
    )
    header = (
        f"{'ISL/OSL':>11} {'model':>11} | {'batch':>5} | {'size.py GiB':>11} {'alloc GiB':>9} | {'prefill s':>9} | "
        f"{'step ms first..last':>21} | {'decode tok/s':>12} {'tok/CPU-s':>9} | {'output tok/s':>12} | {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    results, profiled = [], []
    foreign = ForeignCpu()
    for isl, osl in parse_cells(args.cells):
        foreign.start()
        runs = [
            run_equal_memory(name, configs[name], models[name], isl, osl, budget, "fp32", args.steps, args.probes,
                             args.prefill_rows, compile)
            for name in ("hybrid", "transformer")
        ]  # fmt: skip
        ratio = runs[0].output_tokens_per_s / runs[1].output_tokens_per_s
        for r in runs:
            print(
                f"{f'{isl}/{osl}':>11} {r.name:>11} | {r.batch:>5} | {r.estimated_bytes / GIB:11.3f} "
                f"{r.measured_bytes / GIB:9.3f} | {r.prefill_s:9.1f} | "
                f"{1e3 * r.probe_step_s[0]:9.1f}..{1e3 * r.probe_step_s[-1]:<10.1f} | {r.decode_tokens_per_s:12.1f} "
                f"{r.decode_tokens_per_cpu_s:9.1f} | {r.output_tokens_per_s:12.1f} | "
                + (f"{ratio:5.2f}x" if r.name == "transformer" else ""),
                flush=True,
            )
        decode_ratio = runs[0].decode_tokens_per_s / runs[1].decode_tokens_per_s
        cpu_ratio = runs[0].decode_tokens_per_cpu_s / runs[1].decode_tokens_per_cpu_s
        print(
            f"{'':>11} decode only {decode_ratio:.2f}x, per CPU-second {cpu_ratio:.2f}x; batch ratio "
            f"{runs[0].batch / runs[1].batch:.2f}x; other processes used "
            f"{fmt(foreign.percent(), '.0f', '?')}% of the machine"
        )
        results.append((isl, osl, ratio))
        profiled.append(runs)
    for runs in profiled:
        print_layer_profile(runs)
    kv = {n: 2 * c.num_key_value_heads * c.head_dim * c.counts()["attention"] * 4 for n, c in configs.items()}
    print(
        f"\nwhy: per token of context the transformer caches {kv['transformer']} B of K/V ("
        f"{configs['transformer'].counts()['attention']} attention layers), the hybrid {kv['hybrid']} B "
        f"({configs['hybrid'].counts()['attention']}), so at equal memory the hybrid runs ~"
        f"{kv['transformer'] / kv['hybrid']:.0f}x the batch at long context, less its fixed Mamba state per sequence; "
        "a decode step then reads about the same KV bytes in both, so that batch ratio is the ceiling of the "
        "throughput ratio, lowered by the hybrid's Mamba state traffic and weights"
    )
    for isl, osl, ratio in results:
        goal = EQUAL_MEMORY_GOALS.get((isl, osl))
        verdict = "" if goal is None else f" (goal >= {goal:g}x: {'met' if ratio >= goal else 'NOT met'})"
        print(f"hybrid/transformer output tokens/s at equal memory, {isl}/{osl}: {ratio:.2f}x{verdict}")
    return results


def prompt(isl: int) -> torch.Tensor:
    return torch.randint(3, 4096, (1, isl), generator=torch.Generator().manual_seed(isl))


def fast_tokens_per_s(model: torch.nn.Module, isl: int, osl: int, compile: bool) -> float:
    """OSL greedy tokens: one prefill (gives token 1) and OSL - 1 steps, wall clock, prefill included."""
    decoder = FastDecoder(model, max_batch=1, max_len=isl + osl, compile=compile)
    ids = prompt(isl)
    start = time.perf_counter()
    token = decoder.prefill(ids).argmax(-1)
    for _ in range(osl - 1):
        token = decoder.step(token).argmax(-1)
    return osl / (time.perf_counter() - start)


def generate_tokens_per_s(model: torch.nn.Module, isl: int, osl: int) -> float:
    ids = prompt(isl)
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(ids, do_sample=False, min_new_tokens=osl, max_new_tokens=osl, pad_token_id=0)
        elapsed = time.perf_counter() - start
    assert out.shape[1] == isl + osl
    return osl / elapsed


@dataclass
class Cell:
    isl: int
    osl: int
    fast: dict[str, float]
    hf: dict[str, float | None]

    @property
    def fast_ratio(self) -> float:
        return self.fast["hybrid"] / self.fast["transformer"]

    @property
    def hf_ratio(self) -> float | None:
        h, t = self.hf["hybrid"], self.hf["transformer"]
        return None if h is None or t is None else h / t


def warm_up(models: dict[str, torch.nn.Module], compile: bool) -> float:
    """Run every path once on a short prompt so no cell pays one-time costs (thread pools, torch.compile)."""
    start = time.perf_counter()
    for model in models.values():
        fast_tokens_per_s(model, 16, 8, compile)
        generate_tokens_per_s(model, 16, 4)
    return time.perf_counter() - start


def fmt(value: float | None, spec: str = ".1f", missing: str = "-", suffix: str = "") -> str:
    return missing if value is None else format(value, spec) + suffix


def plot(cells: list[Cell], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{c.isl}/{c.osl}" for c in cells]
    series = [
        ("hybrid, FastDecoder", [c.fast["hybrid"] for c in cells]),
        ("transformer, FastDecoder", [c.fast["transformer"] for c in cells]),
        ("hybrid, transformers generate", [c.hf["hybrid"] or 0.0 for c in cells]),
        ("transformer, transformers generate", [c.hf["transformer"] or 0.0 for c in cells]),
    ]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.2
    for i, (name, values) in enumerate(series):
        ax.bar([x + (i - 1.5) * width for x in range(len(cells))], values, width, label=name)
    ax.set_xticks(range(len(cells)), labels)
    ax.set_xlabel("input / output tokens")
    ax.set_ylabel("output tokens/s (prefill included)")
    ax.set_title("Decode throughput, batch 1, fp32, CPU (bars at 0: baseline skipped)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid, for smoke testing")
    parser.add_argument("--plot", default=None, help="save a PNG of tokens/s per cell here")
    parser.add_argument("--no-compile", action="store_true", help="run FastDecoder without torch.compile")
    parser.add_argument(
        "--equal-memory",
        type=float,
        default=None,
        metavar="GIB",
        help="the paper's measurement: each model at the largest batch that fits GIB GiB",
    )
    parser.add_argument("--cells", default=EQUAL_MEMORY_CELLS, help="ISL/OSL cells for --equal-memory")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per probe (--equal-memory)")
    parser.add_argument("--probes", type=int, default=5, help="cache lengths timed per cell (--equal-memory)")
    parser.add_argument("--prefill-rows", type=int, default=2, help="prompts prefilled for real (--equal-memory)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (--equal-memory default 1: on a shared machine, OpenMP threads that wait for a busy "
        "core spin, and a 0.1 ms op took 20 ms with 2 threads under load here)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None or args.equal_memory is not None:
        torch.set_num_threads(args.threads or 1)
    if args.equal_memory is not None:
        if args.equal_memory <= 0:
            parser.error("--equal-memory: the budget must be a positive number of GiB")
        equal_memory_main(args)
        return
    grid, positions = (QUICK_GRID, QUICK_POSITIONS) if args.quick else (FULL_GRID, FULL_POSITIONS)
    compile = not args.no_compile
    run_start = time.perf_counter()

    hybrid_cfg = hybrid_config()
    hybrid_params = sum(param_breakdown(hybrid_cfg).values())
    transformer_cfg = transformer_config(hybrid_params)
    models = {"hybrid": build(hybrid_cfg), "transformer": build(transformer_cfg)}
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, fp32, batch 1, greedy; "
        f"load average at start {os.getloadavg()[0]:.2f} (other processes on this machine skew every number)"
    )
    print(f"hybrid      {hybrid_cfg.pattern}  intermediate {hybrid_cfg.intermediate_size}  {counts['hybrid']:,} params")
    print(
        f"transformer {transformer_cfg.pattern}  intermediate {transformer_cfg.intermediate_size}  "
        f"{counts['transformer']:,} params ({100 * (counts['transformer'] / counts['hybrid'] - 1):+.1f}%)"
    )
    print(f"FastDecoder torch.compile: {'on' if compile else 'off'}")
    print(f"warm-up (one-time costs, incl. compile, not in any cell): {warm_up(models, compile):.1f} s\n")

    cells: list[Cell] = []
    header = (
        f"{'ISL/OSL':>12} | {'fast hybrid':>11} {'fast transf':>11} {'ratio':>6} | "
        f"{'HF hybrid':>9} {'HF transf':>9} {'ratio':>6} | {'fast/HF hybrid':>14} | {'other CPU':>9}"
    )
    print("output tokens/s (prefill included); other CPU: share of the machine used by other processes meanwhile")
    print(header)
    print("-" * len(header))
    foreign = ForeignCpu()
    for isl, osl in grid:
        foreign.start()
        fast = {name: fast_tokens_per_s(model, isl, osl, compile) for name, model in models.items()}
        hf = {
            name: generate_tokens_per_s(model, isl, osl) if osl <= BASELINE_MAX_OSL[name] else None
            for name, model in models.items()
        }
        cell = Cell(isl, osl, fast, hf)
        cells.append(cell)
        speedup = None if hf["hybrid"] is None else fast["hybrid"] / hf["hybrid"]
        print(
            f"{f'{isl}/{osl}':>12} | {fast['hybrid']:11.1f} {fast['transformer']:11.1f} {cell.fast_ratio:5.2f}x | "
            f"{fmt(hf['hybrid']):>9} {fmt(hf['transformer']):>9} {fmt(cell.hf_ratio, '.2f', suffix='x'):>6} | "
            f"{fmt(speedup, '.2f', suffix='x'):>14} | {fmt(foreign.percent(), '.0f', '?'):>8}%",
            flush=True,
        )
    for name, limit in BASELINE_MAX_OSL.items():
        skipped = [f"{c.isl}/{c.osl}" for c in cells if c.hf[name] is None]
        if skipped:
            print(
                f"(-: transformers generate for the {name} skipped at {', '.join(skipped)}; above {limit} output "
                "tokens it would push the run past ~10 minutes)"
            )

    print("\nper-token decode time vs position (ms; median of 16 steps after a prefill of that length)")
    print("kind columns: the same step with a timer around every layer, summed over the layers of each kind")
    foreign.start()
    print(f"{'model':>11} {'position':>8} | {'step':>6} | {'mamba':>6} {'attention':>9} {'mlp':>6} {'other':>6}")
    rows_by_model = {}
    for name, model in models.items():
        decoder = FastDecoder(model, max_batch=1, max_len=max(positions) + 64, compile=compile)
        rows_by_model[name] = per_token_times(decoder, positions, steps=16)
        for r in rows_by_model[name]:
            print(
                f"{name:>11} {int(r['position']):>8} | {r['step_ms']:6.2f} | {r['mamba_ms']:6.2f} "
                f"{r['attention_ms']:9.2f} {r['mlp_ms']:6.2f} {r['other_ms']:6.2f}",
                flush=True,
            )

    print(f"(other processes used {fmt(foreign.percent(), '.0f', '?')}% of the machine meanwhile)")
    first = positions[0]
    eager = FastDecoder(models["hybrid"], max_batch=1, max_len=first + 128, compile=False)
    eager_ms = per_token_times(eager, [first], steps=32, breakdown=False)[0]["step_ms"]
    print(
        f"hybrid step at position {first}: {eager_ms:.2f} ms with compile off, "
        f"{rows_by_model['hybrid'][0]['step_ms']:.2f} ms {'with compile on' if compile else '(compile off)'}"
    )

    longest = max(cells, key=lambda c: (c.isl + c.osl, c.osl))
    print("\nsummary")
    print(
        f"  hybrid/transformer at the longest cell {longest.isl}/{longest.osl}: {longest.fast_ratio:.2f}x "
        f"(goal >= {GOAL_RATIO:.0f}x: {'met' if longest.fast_ratio >= GOAL_RATIO else 'NOT met'})"
    )
    print(f"  hybrid/transformer by cell: {', '.join(f'{c.isl}/{c.osl}: {c.fast_ratio:.2f}x' for c in cells)}")
    context = longest.isl + longest.osl // 2  # mean context over the cell's decode steps
    weights = {n: 4 * (counts[n] - m.config.vocab_size * m.config.hidden_size) for n, m in models.items()}
    kv = {n: 4 * 2 * m.config.num_key_value_heads * m.config.head_dim * m.config.layers_block_type.count(
        "full_attention") * context for n, m in models.items()}  # fmt: skip
    bound = (weights["transformer"] + kv["transformer"]) / (weights["hybrid"] + kv["hybrid"])
    print(
        f"  bytes read per decoded token at that cell's mean context ({context}): hybrid "
        f"{weights['hybrid'] / 1e6:.1f} MB weights + {kv['hybrid'] / 1e6:.1f} MB KV, transformer "
        f"{weights['transformer'] / 1e6:.1f} MB + {kv['transformer'] / 1e6:.1f} MB KV, so a bandwidth-bound step "
        f"is at most {bound:.2f}x faster for the hybrid at batch 1 (4x needs KV >> weights: 8 vs 2 attention layers)"
    )
    for c in cells:
        if c.isl == 1024 and c.hf["hybrid"] is not None:
            speedup = c.fast["hybrid"] / c.hf["hybrid"]
            print(
                f"  FastDecoder vs transformers generate, hybrid, ISL {c.isl} OSL {c.osl}: {speedup:.2f}x "
                f"(goal >= {GOAL_SPEEDUP:.0f}x: {'met' if speedup >= GOAL_SPEEDUP else 'NOT met'})"
            )
    h_rows, t_rows = rows_by_model["hybrid"], rows_by_model["transformer"]
    print(
        f"  per token from position {int(h_rows[0]['position'])} to {int(h_rows[-1]['position'])}: hybrid Mamba "
        f"layers {h_rows[0]['mamba_ms']:.2f} -> {h_rows[-1]['mamba_ms']:.2f} ms "
        f"({100 * (h_rows[-1]['mamba_ms'] / h_rows[0]['mamba_ms'] - 1):+.0f}%), hybrid attention "
        f"{h_rows[0]['attention_ms']:.2f} -> {h_rows[-1]['attention_ms']:.2f} ms, transformer attention "
        f"{t_rows[0]['attention_ms']:.2f} -> {t_rows[-1]['attention_ms']:.2f} ms; whole step transformer/hybrid "
        f"{t_rows[0]['step_ms'] / h_rows[0]['step_ms']:.2f}x -> {t_rows[-1]['step_ms'] / h_rows[-1]['step_ms']:.2f}x"
    )
    print(f"  total wall time {time.perf_counter() - run_start:.0f} s; load average {os.getloadavg()[0]:.2f}")
    if args.plot:
        plot(cells, args.plot)
        print(f"  plot: {args.plot}")


if __name__ == "__main__":
    main()
