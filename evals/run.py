"""`nano2 eval run CONFIG`: generate answers for benchmark items with any backend, score them, summarise with CIs.

A run is a directory holding `samples.jsonl` (one line per generated sample: item, sample index, raw output,
extracted answer, verdict, tokens), `summary.json` (`{"model": ..., "benchmarks": [{name, n, metric, score, ci_low,
ci_high}, ...]}`, the shape `nano2 report` reads), `report.md` + `scores.png`, and a manifest (kind "eval"; inputs:
the checkpoint and every benchmark file read).

Resumable: every sample is keyed by (benchmark, item id, sample index, settings hash), where the hash covers the
model identity, the exact prompt and the sampling settings. A rerun reuses every sample whose key is already in
`samples.jsonl` and generates only the rest, so a killed run continues where it stopped and raising `n` only adds
samples. Sample i of an item uses seed + i, as every backend does.

Scores are fractions in [0, 1] with 95% confidence intervals (`evals.intervals`); the method of each interval is
recorded in the manifest (`extra.ci`). The parts: `evals.config` (the YAML), `evals.tasks` (items as prompts),
`evals.plan` (sample keys), `evals.store` (samples.jsonl), `evals.scoring` (verdicts, by `verify/`),
`evals.summary` (metrics and CIs); this module generates what is missing and writes the run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.config import EvalConfig
from evals.intervals import CI_LEVEL
from evals.plan import PlannedItem, model_identity, plan_run
from evals.scoring import Verdict, score_answers, scored_answer
from evals.store import SAMPLES_FILE, SampleStore, item_samples
from evals.summary import SUMMARY_FILE, BenchmarkSummary, summarize
from evals.tasks import benchmark_files
from nano2.errors import Nano2Error
from synthetic.backends import BackendConfig, GenerationResponse


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with `count` torch CPU threads, restoring the previous setting afterwards (None: leave it alone).

    Why: a decode step of a tiny model is a few small matrix products; with two threads on a machine whose cores
    are busy with other work, each product waits for the busy core and a step is ~40x slower than on one thread.
    """
    if count is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class RunResult:
    """What a run did (the CLI prints it): where it wrote, the summary, and how many samples were new or reused."""

    output_dir: Path
    summary: dict[str, Any]
    planned_samples: int
    generated: int
    reused: int
    rescored: int = 0
    errors: list[str] = field(default_factory=list)
    dropped_lines: int = 0


ProgressCallback = Callable[[int, int, str], None]


def resolve_backend(cfg: EvalConfig, model_override: str | None = None) -> BackendConfig:
    """The configured backend, with `--model` applied; a missing local checkpoint is one clear error up front."""
    backend = cfg.model
    if model_override is not None:
        backend = backend.model_copy(update={"model": str(model_override)})
    if backend.kind == "local" and not Path(backend.model).is_dir():
        raise Nano2Error(
            f"checkpoint {backend.model} not found (config model, or --model PATH); make one with "
            "`nano2 model init tiny-12b -o PATH --tokenizer TOKENIZER` or train it"
        )
    return backend


def model_label(cfg: EvalConfig, backend: BackendConfig) -> str:
    """The model's name in summaries and the run directory: the config's label, else the checkpoint's name."""
    if cfg.label:
        return cfg.label
    name = Path(backend.model).name if backend.kind == "local" else backend.model
    return name.replace("/", "_") or "model"


def _records_for(
    planned: PlannedItem, response: GenerationResponse, first: int, verdicts: Sequence[Verdict]
) -> list[dict[str, Any]]:
    records = []
    for offset, (text, verdict) in enumerate(zip(response.texts, verdicts, strict=True)):
        sample = first + offset
        records.append(
            {
                "benchmark": planned.task.family,
                "group": planned.task.group,
                "item_id": planned.task.item_id,
                "sample": sample,
                "settings": planned.settings,
                "seed": planned.sampling.seed + sample,
                "output": text,
                "extracted": verdict.extracted,
                "verdict": verdict.verdict,
                "correct": verdict.correct,
                "tokens": response.completion_tokens[offset] if offset < len(response.completion_tokens) else None,
                "prompt_tokens": response.prompt_tokens,
                "finish_reason": response.finish_reasons[offset] if offset < len(response.finish_reasons) else None,
                "detail": verdict.detail,
            }
        )
    return records


def _missing_ranges(planned: PlannedItem, store: SampleStore) -> list[tuple[int, int]]:
    """Runs of consecutive sample indices not yet in the store, as (first, count)."""
    ranges: list[tuple[int, int]] = []
    for i in range(planned.sampling.n):
        if planned.key(i) in store.records:
            continue
        if ranges and ranges[-1][0] + ranges[-1][1] == i:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + 1)
        else:
            ranges.append((i, 1))
    return ranges


def _generate_batch(
    backend, batch: Sequence[tuple[PlannedItem, int, int]], start: int, cfg: EvalConfig, errors: list[str]
) -> list[dict[str, Any]]:
    """Send one batch of (item, first sample, count) requests, score the answers, return the new records.

    A failed request is recorded in `errors` and not stored, so a rerun retries it.
    """
    requests = [p.request(f"{start + j}", first, count) for j, (p, first, count) in enumerate(batch)]
    responses = backend.generate(requests)
    if len(responses) != len(requests):
        raise Nano2Error(f"backend returned {len(responses)} responses for {len(requests)} requests")
    pairs, owners = [], []
    for (p, first, count), response in zip(batch, responses, strict=True):
        if not response.ok or len(response.texts) != count:
            reason = response.error or f"{len(response.texts)} texts for {count} samples"
            errors.append(f"{p.task.item_id} samples {first}-{first + count - 1}: {reason}")
            continue
        owners.append((p, response, first))
        pairs.extend((p.task, scored_answer(text, p.spec.prompt, p.sampling.thinking)) for text in response.texts)
    verdicts = iter(score_answers(pairs, cfg.sandbox, cfg.sandbox_workers))
    records = []
    for p, response, first in owners:
        records.extend(_records_for(p, response, first, [next(verdicts) for _ in response.texts]))
    return records


def run_eval(
    cfg: EvalConfig,
    *,
    config_path: str | Path | None = None,
    model_override: str | None = None,
    output: str | Path | None = None,
    backend=None,
    rescore: bool = False,
    on_progress: ProgressCallback | None = None,
) -> RunResult:
    """Generate what is missing, score it, write samples.jsonl, summary.json, report and manifest.

    `backend` (anything with the Backend protocol) is used instead of building the configured one: the configured
    model, already loaded (or a scripted stand-in in tests). Sample keys always use the configured model's identity.
    """
    backend_cfg = resolve_backend(cfg, model_override)
    label = model_label(cfg, backend_cfg)
    out = Path(output) if output is not None else Path(cfg.output_dir) / label
    identity = model_identity(backend_cfg)
    planned = plan_run(cfg, identity)
    files = sorted({p for spec in cfg.benchmarks for p in benchmark_files(spec, cfg.data_dir)})
    store = SampleStore(out / SAMPLES_FILE)
    total = sum(p.sampling.n for p in planned)
    reused = sum(1 for p in planned for i in range(p.sampling.n) if p.key(i) in store.records)
    rescored = _rescore(planned, store, cfg) if rescore else 0

    work = [(p, first, count) for p in planned for first, count in _missing_ranges(p, store)]
    errors: list[str] = []
    generated = 0
    if on_progress:
        on_progress(reused, total, "reused" if reused else "starting")
    if work:
        own_backend = backend is None
        with torch_threads(cfg.torch_threads if backend_cfg.kind == "local" else None):
            if own_backend:
                from synthetic.backends import make_backend

                backend = make_backend(backend_cfg)
            try:
                for start in range(0, len(work), cfg.batch_size):
                    batch = work[start : start + cfg.batch_size]
                    new_records = _generate_batch(backend, batch, start, cfg, errors)
                    store.add(new_records)
                    generated += len(new_records)
                    if on_progress:
                        on_progress(reused + generated, total, batch[-1][0].task.family)
            finally:
                if own_backend:
                    backend.close()

    summary_data = summarize(planned, store, cfg.bootstrap_resamples)
    summary = {"model": label, "benchmarks": summary_data.entries}
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    from evals.report import write_report

    write_report([out], out, title=f"Evaluation of {label}")
    _write_run_manifest(out, cfg, config_path, backend_cfg, label, planned, store, summary_data, files, errors)
    return RunResult(out, summary, total, generated, reused, rescored, errors, store.dropped_lines)


def _rescore(planned: Sequence[PlannedItem], store: SampleStore, cfg: EvalConfig) -> int:
    """Score the stored outputs again (after a scorer fix) without generating anything."""
    targets = [(p, r) for p in planned for r in item_samples(p, store)]
    if not targets:
        return 0
    pairs = [(p.task, scored_answer(r["output"], p.spec.prompt, p.sampling.thinking)) for p, r in targets]
    for (_, record), verdict in zip(targets, score_answers(pairs, cfg.sandbox, cfg.sandbox_workers), strict=True):
        record.update(
            extracted=verdict.extracted, verdict=verdict.verdict, correct=verdict.correct, detail=verdict.detail
        )
    store.rewrite()
    return len(targets)


def _write_run_manifest(
    out: Path,
    cfg: EvalConfig,
    config_path: str | Path | None,
    backend_cfg: BackendConfig,
    label: str,
    planned: Sequence[PlannedItem],
    store: SampleStore,
    summary: BenchmarkSummary,
    files: Sequence[Path],
    errors: Sequence[str],
) -> None:
    from nano2.manifest import OutputStats, Stats, current_command, input_ref, write_manifest
    from verify.sandbox import sandbox_capabilities

    inputs = []
    checkpoint = Path(backend_cfg.model)
    if checkpoint.is_dir():
        inputs.append(input_ref(checkpoint))
    inputs.extend(input_ref(path) for path in files)
    by_benchmark: dict[str, Stats] = {}
    samples = tokens = 0
    for p in planned:
        records = item_samples(p, store)
        count = sum(r.get("tokens") or 0 for r in records)
        stats = by_benchmark.setdefault(p.task.group, Stats(documents=0, tokens=0))
        stats.documents = (stats.documents or 0) + len(records)
        stats.tokens = (stats.tokens or 0) + count
        samples += len(records)
        tokens += count
    uses_code = any(p.task.kind == "code" for p in planned)
    write_manifest(
        out,
        kind="eval",
        name=label,
        command=current_command(),
        config=cfg.model_copy(update={"model": backend_cfg}),
        config_path=str(config_path) if config_path else None,
        inputs=inputs,
        stats=OutputStats(documents=samples, tokens=tokens, by={"benchmark": by_benchmark}),
        extra={
            "model": backend_cfg.model_dump(mode="json"),
            "ci": {"level": CI_LEVEL, "methods": summary.ci_methods},
            "missing_items": summary.missing_items,
            "request_errors": list(errors[:50]),
            "request_error_count": len(errors),
            **({"sandbox": sandbox_capabilities().to_dict()} if uses_code else {}),
        },
    )
