"""`nano2 eval budget CONFIG`: accuracy and generated tokens as a function of the thinking budget (paper Figure 5).

For each budget in the config's `budget:` section, every selected item is answered with reasoning on under Nano 2's
budget rule (`model.generate.make_budget`: once the trace has used the budget, `</think>` is inserted after the next
newline, or after `grace` more tokens at the latest), then scored like `nano2 eval run` scores it. The rule runs
inside our decode loop, so this needs a local checkpoint (the local backend's model and tokenizer).

Output (`OUTPUT_DIR/LABEL/budget/` or `--output`): `budget.json` (per budget: n, accuracy with its 95% CI, mean
generated and thinking tokens, share of traces closed by the rule, and the same per benchmark), `budget.png`,
`samples.jsonl` (resumable like the runner's: keys include the budget) and a manifest (kind "eval-budget").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evals.config import EvalConfig
from evals.intervals import estimate
from evals.plan import PlannedItem, model_identity, settings_hash
from evals.run import ProgressCallback, model_label, resolve_backend, torch_threads
from evals.scoring import score_answers, scored_answer
from evals.store import SAMPLES_FILE, SampleStore
from evals.tasks import Task, benchmark_files, load_tasks
from nano2.errors import Nano2Error

BUDGET_FILE, BUDGET_PLOT = "budget.json", "budget.png"


@dataclass
class BudgetResult:
    output_dir: Path
    curve: dict[str, Any]
    generated: int
    reused: int


class BudgetedGenerator:
    """A local checkpoint decoding chats with reasoning on under a thinking budget (one sequence at a time)."""

    def __init__(self, checkpoint: str | Path, dtype: str = "fp32", device: str = "cpu"):
        from synthetic.backends.local import LocalBackend

        self.backend = LocalBackend(checkpoint, dtype=dtype, device=device)
        self.tokenizer = self.backend.tokenizer
        self.stop_ids = tuple(
            t for t in (self.tokenizer.token_to_id("</s>"), self.tokenizer.token_to_id("<SPECIAL_12>")) if t is not None
        )
        self._decoder = None
        self._rules: dict[tuple[int, int], Any] = {}

    def prompt_ids(self, task: Task) -> list[int]:
        from synthetic.backends import GenerationRequest

        request = GenerationRequest(key=task.item_id, messages=tuple(dict(m) for m in task.messages), thinking=True)
        return self.tokenizer.encode(self.backend.prompt_text(request), add_special_tokens=False).ids

    def _rule(self, budget: int, grace: int):
        """A fresh budget state machine (the newline-token scan over the vocabulary is done once per budget)."""
        from model.generate import make_budget

        if (budget, grace) not in self._rules:
            self._rules[(budget, grace)] = make_budget(self.tokenizer, budget, grace, thinking=True)
        return dataclasses.replace(self._rules[(budget, grace)])

    def generate(self, prompt_ids: list[int], budget: int, grace: int, max_tokens: int, sampling, seed: int):
        from model.fast_decode import FastDecoder
        from model.generate import SamplingParams, generate

        needed = len(prompt_ids) + max_tokens + 1
        if self._decoder is None or self._decoder.max_len < needed:
            self._decoder = FastDecoder(self.backend.hf_model, max_batch=1, max_len=max(needed, 256))
        params = SamplingParams(
            max_new_tokens=max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=seed,
            stop_token_ids=self.stop_ids,
        )
        result = generate(self._decoder, prompt_ids, params, tokenizer=self.tokenizer, budget=self._rule(budget, grace))
        text = result.text or ""
        if result.finish_reason == "stop_token":
            for token in ("</s>", "<SPECIAL_12>"):
                text = text.removesuffix(token)
        return result, text

    def close(self) -> None:
        self.backend.close()


def _budget_hash(base: str, budget: int, grace: int, answer_tokens: int) -> str:
    return hashlib.sha256(f"{base}|budget={budget}|grace={grace}|answer={answer_tokens}".encode()).hexdigest()[:16]


def _point(records_by_item: dict[str, list[dict[str, Any]]], budget: int, resamples: int) -> dict[str, Any]:
    items = [rs for rs in records_by_item.values() if rs]
    flat = [r for rs in items for r in rs]
    result = estimate([([float(np.mean([r["correct"] for r in rs])) for rs in items], [1.0] * len(items))], resamples)
    return {
        "budget": budget,
        "n": len(items),
        "samples": len(flat),
        "accuracy": result.score,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "ci_method": result.method,
        "mean_tokens": float(np.mean([r["tokens"] for r in flat])),
        "mean_thinking_tokens": float(np.mean([r["thinking_tokens"] for r in flat])),
        "forced_close_rate": float(np.mean([r["forced_close"] is not None for r in flat])),
    }


def run_budget_curve(
    cfg: EvalConfig,
    *,
    config_path: str | Path | None = None,
    model_override: str | None = None,
    output: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
) -> BudgetResult:
    """Generate and score every (budget, item, sample) not yet done; write budget.json, budget.png, manifest."""
    curve_cfg = cfg.budget
    if curve_cfg is None:
        raise Nano2Error("the config has no `budget:` section (budgets, grace, answer_tokens, benchmarks)")
    backend_cfg = resolve_backend(cfg, model_override)
    if backend_cfg.kind != "local":
        raise Nano2Error(
            f"the thinking-budget curve needs a local checkpoint (model kind 'local', got {backend_cfg.kind!r}): "
            "the budget rule runs inside our decode loop; pass --model CHECKPOINT_DIR"
        )
    label = model_label(cfg, backend_cfg)
    out = Path(output) if output is not None else Path(cfg.output_dir) / label / "budget"
    specs = [b for b in cfg.benchmarks if not curve_cfg.benchmarks or b.name in curve_cfg.benchmarks]
    completion = [b.name for b in specs if b.prompt != "chat"]
    if completion:
        raise Nano2Error(f"budget curve: {completion} use completion prompts; thinking budgets need chat prompts")
    identity = model_identity(backend_cfg)
    planned: list[tuple[int, PlannedItem]] = []
    for spec in specs:
        sampling = spec.sampling.apply(cfg.sampling).model_copy(update={"thinking": True})
        for task in load_tasks(spec, cfg.data_dir):
            base = settings_hash(identity, task, "chat", sampling)
            for budget in curve_cfg.budgets:
                settings = _budget_hash(base, budget, curve_cfg.grace, curve_cfg.answer_tokens)
                planned.append((budget, PlannedItem(task, spec, sampling, settings)))
    store = SampleStore(out / SAMPLES_FILE)
    todo = [(b, p, i) for b, p in planned for i in range(p.sampling.n) if p.key(i) not in store.records]
    total = sum(p.sampling.n for _, p in planned)
    reused = total - len(todo)
    if on_progress:
        on_progress(reused, total, "reused" if reused else "starting")
    generated = 0
    if todo:
        with torch_threads(cfg.torch_threads):
            generated = _generate(todo, curve_cfg, backend_cfg, cfg, store, reused, total, on_progress)

    curve = _curve(label, curve_cfg, planned, store, cfg.bootstrap_resamples)
    out.mkdir(parents=True, exist_ok=True)
    (out / BUDGET_FILE).write_text(json.dumps(curve, indent=2) + "\n", encoding="utf-8")
    _plot(curve, out / BUDGET_PLOT)
    _write_manifest(out, cfg, config_path, backend_cfg, label, specs, store, curve)
    return BudgetResult(out, curve, generated, reused)


def _generate(
    todo,
    curve_cfg,
    backend_cfg,
    cfg: EvalConfig,
    store: SampleStore,
    reused: int,
    total: int,
    on_progress: ProgressCallback | None,
) -> int:
    """Generate and score the missing (budget, item, sample) triples, one budget at a time; returns how many."""
    generator = BudgetedGenerator(backend_cfg.model, dtype=backend_cfg.dtype or "fp32", device=backend_cfg.device)
    prompts: dict[str, list[int]] = {}
    generated = 0
    try:
        for budget in curve_cfg.budgets:
            batch = [(p, i) for b, p, i in todo if b == budget]
            outputs = []
            max_tokens = budget + curve_cfg.grace + curve_cfg.answer_tokens
            for p, i in batch:
                ids = prompts.setdefault(p.task.item_id, generator.prompt_ids(p.task))
                result, text = generator.generate(
                    ids, budget, curve_cfg.grace, max_tokens, p.sampling, p.sampling.seed + i
                )
                outputs.append((p, i, result, text))
                if on_progress:
                    on_progress(reused + generated + len(outputs), total, f"budget {budget}")
            pairs = [(p.task, scored_answer(text, "chat", True)) for p, _, _, text in outputs]
            verdicts = score_answers(pairs, cfg.sandbox, cfg.sandbox_workers)
            store.add(
                _record(p, i, budget, result, text, verdict)
                for (p, i, result, text), verdict in zip(outputs, verdicts, strict=True)
            )
            generated += len(outputs)
    finally:
        generator.close()
    return generated


def _record(p: PlannedItem, sample: int, budget: int, result, text: str, verdict) -> dict[str, Any]:
    return {
        "benchmark": p.task.family,
        "group": p.task.group,
        "item_id": p.task.item_id,
        "sample": sample,
        "settings": p.settings,
        "budget": budget,
        "seed": p.sampling.seed + sample,
        "output": text,
        "extracted": verdict.extracted,
        "verdict": verdict.verdict,
        "correct": verdict.correct,
        "tokens": len(result.token_ids),
        "thinking_tokens": result.thinking_tokens,
        "forced_close": result.forced_close,
        "finish_reason": result.finish_reason,
        "detail": verdict.detail,
    }


def _curve(label, curve_cfg, planned: Sequence[tuple[int, PlannedItem]], store: SampleStore, resamples: int):
    points = []
    for budget in curve_cfg.budgets:
        overall: dict[str, list[dict[str, Any]]] = {}
        by_group: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(dict)
        for b, p in planned:
            if b != budget:
                continue
            records = [r for i in range(p.sampling.n) if (r := store.records.get(p.key(i))) is not None]
            if records:
                overall[p.task.item_id] = records
                by_group[p.task.group][p.task.item_id] = records
        if not overall:
            continue
        point = _point(overall, budget, resamples)
        point["by_benchmark"] = {group: _point(items, budget, resamples) for group, items in by_group.items()}
        points.append(point)
    return {
        "model": label,
        "grace": curve_cfg.grace,
        "answer_tokens": curve_cfg.answer_tokens,
        "rule": "Nano 2: </think> after the next newline once the budget is reached; hard cut at budget + grace",
        "budgets": points,
    }


def _plot(curve: dict[str, Any], path: Path) -> None:
    from evals.report import plot_budget_curves

    groups = sorted({g for point in curve["budgets"] for g in point["by_benchmark"]})
    series = [("all", curve["budgets"])]
    if len(groups) > 1:
        for group in groups:
            series.append(
                (
                    group,
                    [
                        {**p["by_benchmark"][group], "budget": p["budget"]}
                        for p in curve["budgets"]
                        if group in p["by_benchmark"]
                    ],
                )
            )
    plot_budget_curves(series, path, f"Thinking budget: {curve['model']}")


def _write_manifest(out, cfg, config_path, backend_cfg, label, specs, store: SampleStore, curve) -> None:
    from nano2.manifest import OutputStats, current_command, input_ref, write_manifest

    files = sorted({p for spec in specs for p in benchmark_files(spec, cfg.data_dir)})
    records = list(store.records.values())
    write_manifest(
        out,
        kind="eval-budget",
        name=label,
        command=current_command(),
        config=cfg.model_copy(update={"model": backend_cfg}),
        config_path=str(config_path) if config_path else None,
        inputs=[input_ref(backend_cfg.model), *(input_ref(p) for p in files)],
        stats=OutputStats(documents=len(records), tokens=sum(r["tokens"] for r in records)),
        extra={"budgets": [{k: v for k, v in p.items() if k != "by_benchmark"} for p in curve["budgets"]]},
    )
