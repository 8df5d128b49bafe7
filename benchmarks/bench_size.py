"""Parameters and 128k-context memory of the 12B and 9B next to the paper's figures (shared/docs/paper-facts.md).

Also times the formula count against instantiating the model on the meta device, and prints their ratio.
"""

from __future__ import annotations

import time

from model.configs import get_config
from model.size import GIB, GPUS, inference_memory, max_context, meta_param_breakdown, param_breakdown

PAPER = {
    # name: (parameters in billions, by component in billions: embeddings (in + out), mamba, mlp, attention)
    "nano2-12b": (12.31, {"embeddings": 1.342, "mamba": 4.718, "mlp": 5.872, "attention": 0.378}),
    "nano2-9b": (8.89, {"embeddings": 1.174, "mamba": 3.981, "mlp": 3.512, "attention": 0.220}),
}
PAPER_9B_MEMORY_GIB = {"weights": 16.55, "kv_cache": 2.0, "mamba_ssm": 0.13, "total": 18.7}


def main() -> None:
    a10g = GPUS["a10g"]
    print(f"a10g budget (paper rule 22.06 x 0.95 - 1.3): {a10g.budget_gib:.3f} GiB (paper: 19.66)")
    for name, (paper_total, paper_parts) in PAPER.items():
        cfg = get_config(name)
        t0 = time.perf_counter()
        formula = param_breakdown(cfg)
        t_formula = time.perf_counter() - t0
        t0 = time.perf_counter()
        meta = meta_param_breakdown(cfg)
        t_meta = time.perf_counter() - t0
        total = sum(formula.values())
        ours = {
            "embeddings": (formula["embedding"] + formula["lm_head"]) / 1e9,
            "mamba": formula["mamba"] / 1e9,
            "mlp": formula["mlp"] / 1e9,
            "attention": formula["attention"] / 1e9,
        }
        print(f"\n{name}: {total:,} parameters = {total / 1e9:.3f}B (paper {paper_total}B); meta-device count "
              f"{'equal' if meta == formula else 'DIFFERENT'}; formula {t_formula * 1e3:.2f} ms vs meta "
              f"{t_meta * 1e3:.0f} ms ({t_meta / max(t_formula, 1e-9):,.0f}x)")  # fmt: skip
        for part, value in ours.items():
            print(f"  {part:<11} {value:7.3f}B   paper {paper_parts[part]:7.3f}B")
        mem = inference_memory(cfg, 131072)
        verdict = "fits" if mem.total <= a10g.budget_bytes else "does not fit"
        print(
            f"  128k, batch 1, bf16 (SSM fp32): weights {mem.weights / GIB:.2f} + KV {mem.kv_cache / GIB:.2f} + "
            f"conv {mem.mamba_conv / GIB:.3f} + SSM {mem.mamba_ssm / GIB:.3f} = {mem.total / GIB:.2f} GiB -> "
            f"{verdict} in {a10g.budget_gib:.2f} GiB; longest context on a10g: {max_context(cfg, a10g):,}"
        )
        if name == "nano2-9b":
            p = PAPER_9B_MEMORY_GIB
            print(f"  paper-facts check for the 9B: weights {p['weights']} + KV {p['kv_cache']} + SSM {p['mamba_ssm']}"
                  f" = ~{p['total']} GiB -> fits")  # fmt: skip


if __name__ == "__main__":
    main()
