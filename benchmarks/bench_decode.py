"""Decode throughput of a tiny Nano-2-style hybrid vs a pure-attention transformer of the same size, on this machine.

Both models are NemotronH checkpoints built by the same library (random weights, seed 0, fp32, batch 1, vocab
4096): the hybrid has hidden 256 and 16 blocks, 7 Mamba-2 + 7 MLP + 2 attention placed by `place_attention`; the
transformer repeats attention+MLP ("*-") at the same depth and hidden size, with the MLP width chosen so the
parameter counts agree (both are printed). Attention heads (8 query, 2 KV, head_dim 32) are the same in both.

For each (ISL, OSL) cell: output tokens per second, prefill included (OSL / (prefill + OSL - 1 steps)), with our
`FastDecoder` and with plain `model.generate(do_sample=False, min_new_tokens=OSL, max_new_tokens=OSL)`. Then
per-token decode time vs position, split by layer kind, to show where the time goes as the context grows.

Run: `python benchmarks/bench_decode.py [--quick] [--plot decode.png] [--no-compile]`.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import torch

from evals.throughput import ForeignCpu
from model.configs import HybridConfig, place_attention, to_hf_config
from model.fast_decode import FastDecoder, per_token_times
from model.size import param_breakdown

FULL_GRID = [(128, 128), (1024, 1024), (1024, 8192), (8192, 16384)]
QUICK_GRID = [(128, 128), (1024, 256)]
FULL_POSITIONS = [1024, 4096, 8192, 16384]
QUICK_POSITIONS = [256, 1024]
# The transformers-generate baseline is slow: ~11 ms per hybrid token, and for the transformer its DynamicCache
# concatenates K/V at every step, so its cost grows with the output (23 tokens/s over 1k/8k in one run here: ~6
# minutes for that cell alone). Above these output lengths the baseline is skipped ("-"), and the output says so.
BASELINE_MAX_OSL = {"hybrid": 8192, "transformer": 1024}
GOAL_RATIO, GOAL_SPEEDUP = 4.0, 3.0

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


def build(cfg: HybridConfig) -> torch.nn.Module:
    from transformers import NemotronHForCausalLM

    torch.manual_seed(0)
    return NemotronHForCausalLM(to_hf_config(cfg)).eval()


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
    args = parser.parse_args(argv)
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
