"""One prepared GPU check, under 8 minutes on one H100/H200: training throughput, decode, equal memory, FP8.

Why one script: a GPU machine is lent now and then for minutes at a time, so everything we want to know from it
runs as one command, each section within its own time budget, and writes one JSON and one Markdown table.

Sections (each reports `ok`, `skipped: <why>` or `error: <message>`; one failing never stops the others):
  1. train: bf16 forward+backward tokens/s, peak memory and MFU of a ~1.3B-parameter hybrid shaped like the 12B
     (the tiny-12b pattern, 25 blocks 11 M / 3 * / 11 -, hidden 2048, FFN 8192, vocab 131072), activation
     checkpointing off and on. MFU = tokens/s x (6 N + 12 x attention layers x seq x q width) / peak bf16 dense
     FLOP/s (989 TFLOP/s on H100/H200 SXM); N excludes the input embedding; Mamba's scan FLOPs are not counted.
  2. decode: `FastDecoder` vs transformers `generate` (greedy) on the same model, bf16, batch 1: output tokens/s
     and how many greedy tokens agree.
  3. equal_memory: `bench_decode.run_equal_memory` on the GPU in bf16: the benchmark's hybrid vs transformer pair
     (same parameters, same depth), each at the largest batch that fits the budget, at 8k/16k.
  4. fp8: the same model trained 50 steps in bf16 and with torchao float8 (`convert_to_float8_training`) on the
     same synthetic batches: median step time and the loss after the last step. Skipped without torchao or an
     FP8-capable GPU (compute capability >= 8.9).

Run on the device (the image has torch, transformers and Triton, but not pydantic or torchao; carry them as wheels,
see /work/.library/device/README.md). Once, here, in the repo root:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \\
        pydantic==2.14.3 pydantic-core==2.50.4 annotated-types typing-inspection torchao==0.18.0

then one `run` with carry [".whl"] and timeout_s 540:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
        .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT

The JSON and Markdown land in $OUT (the device tool copies them back); commit them as
benchmarks/results/<gpu>-<date>.json and .md (the names the script gives them). Without --out they go to
benchmarks/results/ directly. `--dry-run` runs every section's code on CPU at tiny sizes (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for _path in (REPO, REPO / "benchmarks"):  # run as a plain script on the device: no install there
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import torch  # noqa: E402

from model.configs import HybridConfig, get_config, to_hf_config  # noqa: E402
from model.size import GIB, param_breakdown  # noqa: E402

PEAK_BF16_FLOPS = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}  # dense, SXM
TOTAL_BUDGET_S = 440.0  # the sections' budgets below sum to less; model builds and writing take the rest


@dataclass
class Plan:
    """Sizes and time budgets of one run: the GPU plan, or the same code paths at tiny sizes for --dry-run."""

    device: str
    model: HybridConfig
    train_batch: int
    train_seq: int
    train_steps: int
    decode_isl: int
    decode_osl: int
    equal_cell: tuple[int, int]
    equal_budget_gib: float
    equal_steps: int
    equal_probes: int
    fp8_steps: int
    fp8_batch: int
    compile_decoder: bool
    budgets: dict[str, float]


def hybrid_1b() -> HybridConfig:
    """The 12B's shape rules at ~1.3B parameters: the tiny-12b pattern (25 blocks), 12B's head and state sizes."""
    return get_config("tiny-12b").with_(
        name="hybrid-1b", hidden_size=2048, intermediate_size=8192, num_attention_heads=16, num_key_value_heads=4,
        head_dim=128, mamba_num_heads=64, mamba_head_dim=64, ssm_state_size=128, n_groups=8, chunk_size=128,
        vocab_size=131072, max_position_embeddings=32768,
        description="~1.3B hybrid shaped like the 12B: tiny-12b pattern, hidden 2048, FFN 8192",
    )  # fmt: skip


def make_plan(dry_run: bool) -> Plan:
    if dry_run:
        return Plan(
            device="cpu", model=get_config("tiny-12b"), train_batch=2, train_seq=64, train_steps=3,
            decode_isl=16, decode_osl=8, equal_cell=(64, 96), equal_budget_gib=0.1, equal_steps=1, equal_probes=2,
            fp8_steps=4, fp8_batch=2, compile_decoder=False,
            budgets={"train": 60.0, "decode": 60.0, "equal_memory": 60.0, "fp8": 60.0},
        )  # fmt: skip
    return Plan(
        device="cuda", model=hybrid_1b(), train_batch=4, train_seq=2048, train_steps=20,
        decode_isl=1024, decode_osl=256, equal_cell=(8192, 16384), equal_budget_gib=16.0, equal_steps=3,
        equal_probes=3, fp8_steps=50, fp8_batch=2, compile_decoder=False,
        budgets={"train": 120.0, "decode": 75.0, "equal_memory": 75.0, "fp8": 120.0},
    )  # fmt: skip


@dataclass
class Section:
    name: str
    status: str = "ok"
    seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Deadline:
    """A section's time budget, capped by what is left of the whole run's."""

    def __init__(self, seconds: float, run_end: float):
        self.end = min(time.monotonic() + seconds, run_end)

    def left(self) -> float:
        return self.end - time.monotonic()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def build(cfg: HybridConfig, device: str, dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    from transformers import NemotronHForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = NemotronHForCausalLM(to_hf_config(cfg))
    return model.to(dtype)


def synthetic_batches(vocab: int, batch: int, seq: int, count: int, seed: int = 0) -> list[torch.Tensor]:
    """Learnable sequences (each an arithmetic progression mod 1024 from a random start and stride), so the loss
    after 50 steps says whether training works; the same batches for every arm."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        start = torch.randint(0, 1024, (batch, 1), generator=gen)
        stride = torch.randint(1, 8, (batch, 1), generator=gen)
        out.append((start + stride * torch.arange(seq)) % min(1024, vocab) + 3)
    return out


def flops_per_token(cfg: HybridConfig, seq: int) -> float:
    """Training FLOPs per token: 6 N (N without the input embedding) + 12 x attention layers x seq x q width."""
    n = sum(param_breakdown(cfg).values()) - param_breakdown(cfg)["embedding"]
    return 6 * n + 12 * cfg.counts()["attention"] * seq * cfg.num_attention_heads * cfg.head_dim


def peak_flops(device: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def train_steps(
    model: torch.nn.Module, batches: list[torch.Tensor], device: str, deadline: Deadline, lr: float = 3e-4
) -> tuple[list[float], list[float]]:
    """AdamW steps over `batches` until they run out or the deadline passes: (seconds per step, losses)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    times, losses = [], []
    for ids in batches:
        if deadline.left() <= 0:
            break
        ids = ids.to(device)
        sync(device)
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    del optimizer
    return times, losses


def section_train(plan: Plan, deadline: Deadline, section: Section) -> None:
    cfg, device = plan.model, plan.device
    model = build(cfg, device)
    params = sum(p.numel() for p in model.parameters())
    section.notes.append(f"model {cfg.pattern} hidden {cfg.hidden_size}: {params / 1e9:.3f}B parameters, bf16")
    batches = synthetic_batches(cfg.vocab_size, plan.train_batch, plan.train_seq, plan.train_steps)
    peak = peak_flops(device)
    for checkpointing in (False, True):
        # transformers >= 5.2x names it activation_checkpointing_*; older releases (the device's) gradient_*
        verb = "enable" if checkpointing else "disable"
        toggle = getattr(model, f"activation_checkpointing_{verb}", None) or getattr(
            model, f"gradient_checkpointing_{verb}"
        )
        toggle()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        arm = Deadline(deadline.left() / (2 - checkpointing), deadline.end)
        try:
            times, losses = train_steps(model, batches, device, arm)
        except torch.cuda.OutOfMemoryError as exc:  # the other arm may still fit
            section.rows.append({"activation_checkpointing": checkpointing, "error": f"out of memory: {exc}"[:200]})
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            continue
        timed = times[1:] if len(times) > 1 else times  # the first step pays one-time costs
        step_s = statistics.median(timed)
        tokens_per_s = plan.train_batch * plan.train_seq / step_s
        section.rows.append({
            "activation_checkpointing": checkpointing, "steps": len(times), "step_s": step_s,
            "step_s_range": [min(timed), max(timed)], "tokens_per_s": tokens_per_s,
            "mfu": None if peak is None else tokens_per_s * flops_per_token(cfg, plan.train_seq) / peak,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / GIB if device == "cuda" else None,
            "first_loss": losses[0], "last_loss": losses[-1],
        })  # fmt: skip
    if peak is None:
        section.notes.append("MFU: no peak FLOP/s known for this device")


def section_decode(plan: Plan, deadline: Deadline, section: Section) -> None:
    from model.fast_decode import FastDecoder

    device, isl, osl = plan.device, plan.decode_isl, plan.decode_osl
    model = build(plan.model, device).eval()
    ids = torch.randint(3, plan.model.vocab_size, (1, isl), generator=torch.Generator().manual_seed(0)).to(device)
    decoder = FastDecoder(model, max_batch=1, max_len=isl + osl, compile=plan.compile_decoder)

    def fast() -> torch.Tensor:
        out = [decoder.prefill(ids).argmax(-1)]
        for _ in range(osl - 1):
            out.append(decoder.step(out[-1]).argmax(-1))
        return torch.stack(out, 1)

    def hf() -> torch.Tensor:
        with torch.inference_mode():
            full = model.generate(ids, do_sample=False, min_new_tokens=osl, max_new_tokens=osl, pad_token_id=0)
        return full[:, isl:]

    tokens = {}
    for name, run in (("FastDecoder", fast), ("transformers generate", hf)):
        if deadline.left() <= 0:
            section.notes.append(f"{name}: not run, the section's time budget was spent")
            continue
        run()  # warm-up: kernels, torch.compile, allocator
        sync(device)
        start = time.perf_counter()
        tokens[name] = run()
        sync(device)
        section.rows.append(
            {"engine": name, "isl": isl, "osl": osl, "tokens_per_s": osl / (time.perf_counter() - start)}
        )
    if len(tokens) == 2:
        a, b = tokens["FastDecoder"], tokens["transformers generate"]
        first_diff = next((i for i in range(osl) if a[0, i] != b[0, i]), osl)
        section.rows[0]["speedup_vs_generate"] = section.rows[0]["tokens_per_s"] / section.rows[1]["tokens_per_s"]
        section.notes.append(f"greedy tokens agree for the first {first_diff} of {osl} (bf16 ties may split later)")


def section_equal_memory(plan: Plan, deadline: Deadline, section: Section) -> None:
    from bench_decode import build as build_pair_model
    from bench_decode import model_pair, run_equal_memory

    isl, osl = plan.equal_cell
    budget = int(plan.equal_budget_gib * GIB)
    runs = []
    for name, cfg in model_pair().items():
        if deadline.left() <= 0:
            section.notes.append(f"{name}: not run, the section's time budget was spent")
            return
        model = build_pair_model(cfg, torch.bfloat16, plan.device)
        run = run_equal_memory(
            name, cfg, model, isl, osl, budget, "bf16", plan.equal_steps, plan.equal_probes, 2, plan.compile_decoder
        )
        runs.append(run)
        section.rows.append({
            "model": name, "isl": isl, "osl": osl, "batch": run.batch, "size_py_gib": run.estimated_bytes / GIB,
            "allocated_gib": run.measured_bytes / GIB, "prefill_s": run.prefill_s,
            "step_ms_first_last": [1e3 * run.probe_step_s[0], 1e3 * run.probe_step_s[-1]],
            "decode_tokens_per_s": run.decode_tokens_per_s, "output_tokens_per_s": run.output_tokens_per_s,
        })  # fmt: skip
        del model
    ratio = runs[0].output_tokens_per_s / runs[1].output_tokens_per_s
    section.rows[1]["ratio_hybrid_over_transformer"] = ratio
    section.notes.append(f"budget {plan.equal_budget_gib:g} GiB bf16; hybrid/transformer at {isl}/{osl}: {ratio:.2f}x")


def fp8_unavailable(device: str) -> str | None:
    """Why the FP8 arm cannot run here, or None."""
    try:
        import torchao.float8  # noqa: F401
    except ImportError as exc:
        return f"torchao not importable ({exc}); carry its wheel (see the docstring)"
    if device != "cuda":
        return "torchao float8 needs a CUDA GPU"
    if torch.cuda.get_device_capability() < (8, 9):
        return f"compute capability {torch.cuda.get_device_capability()} < (8, 9): no FP8 matmuls"
    return None


def section_fp8(plan: Plan, deadline: Deadline, section: Section) -> None:
    cfg, device = plan.model, plan.device
    batches = synthetic_batches(cfg.vocab_size, plan.fp8_batch, plan.train_seq, plan.fp8_steps, seed=1)
    base = build(cfg, device)
    why_not = fp8_unavailable(device)
    arms = ["bf16"] + ([] if why_not else ["fp8"])
    if why_not:
        section.notes.append(f"fp8 arm skipped: {why_not}")
    for arm in arms:
        model = copy.deepcopy(base)
        if arm == "fp8":
            from torchao.float8 import convert_to_float8_training

            def use_fp8(module: torch.nn.Module, fqn: str) -> bool:
                return (
                    isinstance(module, torch.nn.Linear)
                    and not fqn.endswith("lm_head")
                    and module.in_features % 16 == 0
                    and module.out_features % 16 == 0
                )

            convert_to_float8_training(model, module_filter_fn=use_fp8)
        times, losses = train_steps(model, batches, device, Deadline(deadline.left() / len(arms), deadline.end))
        timed = times[1:] if len(times) > 1 else times
        section.rows.append({
            "precision": arm, "steps": len(times), "step_s": statistics.median(timed),
            "step_s_range": [min(timed), max(timed)], "first_loss": losses[0], "last_loss": losses[-1],
        })  # fmt: skip
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    if len(section.rows) == 2:
        section.rows[1]["speedup_vs_bf16"] = section.rows[0]["step_s"] / section.rows[1]["step_s"]


SECTIONS: dict[str, Callable[[Plan, Deadline, Section], None]] = {
    "train": section_train,
    "decode": section_decode,
    "equal_memory": section_equal_memory,
    "fp8": section_fp8,
}


def run_sections(plan: Plan, names: list[str], run_end: float) -> list[Section]:
    results = []
    for name in names:
        section = Section(name)
        start = time.monotonic()
        deadline = Deadline(plan.budgets[name], run_end)
        if deadline.left() <= 0:
            section.status = "skipped: the run's time budget was spent"
        else:
            try:
                SECTIONS[name](plan, deadline, section)
            except ImportError as exc:
                section.status = f"skipped: {exc}"
            except Exception as exc:  # one section failing must not lose the others' results
                section.status = f"error: {type(exc).__name__}: {exc}"
                section.notes.append(traceback.format_exc(limit=4))
        section.seconds = time.monotonic() - start
        print(f"[{name}] {section.status} in {section.seconds:.1f} s", flush=True)
        for row in section.rows:
            print(f"  {json.dumps(row)}", flush=True)
        for note in section.notes:
            print(f"  note: {note}", flush=True)
        results.append(section)
        if plan.device == "cuda":
            torch.cuda.empty_cache()
    return results


def environment(device: str) -> dict[str, Any]:
    import transformers

    env = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({platform.processor() or 'unknown'})",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for name in ("triton", "torchao"):
        try:
            env[name] = __import__(name).__version__
        except ImportError:
            env[name] = None
    return env


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "..".join(_cell(v) for v in value)
    return "-" if value is None else str(value)


def markdown(env: dict[str, Any], sections: list[Section], dry_run: bool) -> str:
    lines = [f"# GPU check{' (dry run, CPU, tiny sizes)' if dry_run else ''}: {env['device']}", ""]
    lines.append(", ".join(f"{k} {v}" for k, v in env.items() if k != "device"))
    for section in sections:
        lines += ["", f"## {section.name}: {section.status} ({section.seconds:.0f} s)", ""]
        if section.rows:
            keys = list(dict.fromkeys(k for row in section.rows for k in row))
            lines.append("| " + " | ".join(keys) + " |")
            lines.append("|" + "---|" * len(keys))
            lines += ["| " + " | ".join(_cell(row.get(k)) for k in keys) + " |" for row in section.rows]
        lines += [f"- {note.splitlines()[0] if 'Traceback' not in note else note.strip()}" for note in section.notes]
    return "\n".join(lines) + "\n"


def output_stem(env: dict[str, Any], dry_run: bool) -> str:
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", env["device"]).strip("-").lower() or "device"
    return f"{'dryrun-' if dry_run else ''}{gpu}-{env['date_utc'][:10]}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="every section on CPU at tiny sizes")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for .json/.md")
    parser.add_argument("--compile", action="store_true", help="FastDecoder with torch.compile (slow first call)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"a subset of {','.join(SECTIONS)}")
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {unknown}; known: {', '.join(SECTIONS)}")
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: run on the GPU machine, or pass --dry-run to exercise the code on CPU")
    plan = make_plan(args.dry_run)
    plan.compile_decoder = plan.compile_decoder or args.compile
    run_end = time.monotonic() + TOTAL_BUDGET_S
    env = environment(plan.device)
    print(f"gpu_check on {env['device']}: {', '.join(names)}; whole run capped at {TOTAL_BUDGET_S:.0f} s", flush=True)
    sections = run_sections(plan, names, run_end)
    plan_fields = {k: v for k, v in asdict(plan).items() if k != "model"}
    report = {"environment": env, "dry_run": args.dry_run, "plan": plan_fields, "model": plan.model.model_dump(),
              "sections": [asdict(s) for s in sections]}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stem = output_stem(env, args.dry_run)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(env, sections, args.dry_run))
    print(f"wrote {args.out / stem}.json and .md", flush=True)
    return report


if __name__ == "__main__":
    main()
