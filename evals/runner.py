"""`nano2 eval run CONFIG`: generate answers for benchmark items with any backend, score them, summarise with CIs.

A run is a directory holding `samples.jsonl` (one line per generated sample: item, sample index, raw output,
extracted answer, verdict, tokens), `summary.json` (`{"model": ..., "benchmarks": [{name, n, metric, score, ci_low,
ci_high}, ...]}`, the shape `nano2 report` reads), `report.md` + `scores.png`, and a manifest (kind "eval"; inputs:
the checkpoint and every benchmark file read).

Resumable: every sample is keyed by (benchmark, item id, sample index, settings hash), where the hash covers the
model identity, the exact prompt and the sampling settings. A rerun reuses every sample whose key is already in
`samples.jsonl` and generates only the rest, so a killed run continues where it stopped and raising `n` only adds
samples. Sample i of an item uses seed + i, as every backend does.

Scores are fractions in [0, 1]. Confidence intervals are 95%: the Wilson score interval when every item contributes
one 0/1 outcome, else a percentile bootstrap over items (2000 resamples, seeded, stratified by language for the
multilingual averages; for IFEval's instruction-level accuracy, items are resampled with all their instructions).
The method of each interval is recorded in the manifest (`extra.ci`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evals.sandbox import SandboxLimits
from nano2.errors import Nano2Error
from synthetic.backends import BackendConfig, GenerationRequest, GenerationResponse, Sampling

Kind = Literal["math", "choice", "code", "ifeval"]
CI_LEVEL = 0.95
SAMPLES_FILE, SUMMARY_FILE = "samples.jsonl", "summary.json"
IFEVAL_LANGUAGES = ("es", "fr", "ja")
IFEVAL_METRICS = ("prompt_level_strict", "instruction_level_strict", "prompt_level_loose", "instruction_level_loose")
THINK_END = "</think>"


# ---------------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------------


class SamplingConfig(BaseModel):
    """How each item is sampled. Sample i uses seed + i; `thinking` switches reasoning for chat prompts."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, description="samples per item")
    seed: int = Field(0, ge=0)
    max_tokens: int = Field(512, ge=1)
    thinking: bool | None = Field(None, description="reasoning on/off for chat prompts; null: the model's default")


class SamplingOverride(BaseModel):
    """Per-benchmark changes to the run's sampling settings (unset fields keep the run's value)."""

    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    thinking: bool | None = None

    def apply(self, base: SamplingConfig) -> SamplingConfig:
        return base.model_copy(update=self.model_dump(exclude_unset=True))


class BenchmarkConfig(BaseModel):
    """One benchmark of a run: which items, which prompt, which sampling, which metrics."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="gsm8k, math500, aime24, ..., mgsm, mmlu_stem, humaneval, mbpp, ifeval, m_ifeval")
    limit: int | None = Field(None, ge=1, description="first N items (per language for mgsm / m_ifeval)")
    ids: list[str] = Field(default_factory=list, description="only these item ids (after `limit`)")
    prompt: Literal["chat", "completion"] = Field(
        "chat", description="chat: zero-shot chat turn; completion: the base-model prompt (few-shot where defined)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="loader options: shots, languages, split, ...")
    sampling: SamplingOverride = Field(default_factory=SamplingOverride)
    pass_k: list[int] = Field(default_factory=lambda: [1], description="code benchmarks: the pass@k values reported")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        known = known_benchmarks()
        if name not in known:
            raise ValueError(f"unknown benchmark {name!r}; expected one of {', '.join(known)}")
        return name

    @field_validator("pass_k")
    @classmethod
    def _positive(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 1 for k in ks):
            raise ValueError("pass_k must list values >= 1")
        return sorted(set(ks))


class EvalConfig(BaseModel):
    """A whole evaluation run. `model`: a local checkpoint path, or a backend config (kind local/openai/vllm)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "eval"
    model: BackendConfig
    label: str | None = Field(None, description="name of the model in summaries (default: the checkpoint's name)")
    output_dir: str = Field("runs/evals", description="the run goes to OUTPUT_DIR/LABEL (or exactly to --output)")
    data_dir: str | None = Field(None, description="shared data dir (default: $NANO2_SHARED_DATA or ../shared/data)")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    benchmarks: list[BenchmarkConfig] = Field(min_length=1)
    batch_size: int = Field(16, ge=1, description="requests sent to the backend at once (and written together)")
    sandbox: SandboxLimits = Field(default_factory=SandboxLimits)
    sandbox_workers: int = Field(2, ge=1)
    bootstrap_resamples: int = Field(2000, ge=100)
    torch_threads: int | None = Field(
        None, ge=1, description="CPU threads for local generation (1 is fastest for tiny models on a busy machine)"
    )
    budget: BudgetCurveConfig | None = Field(None, description="`nano2 eval budget`: the thinking-budget curve")

    @field_validator("model", mode="before")
    @classmethod
    def _checkpoint_path(cls, value: Any) -> Any:
        return {"kind": "local", "model": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _unique_and_consistent(self) -> EvalConfig:
        names = [b.name for b in self.benchmarks]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"benchmark(s) listed twice: {', '.join(duplicated)}")
        for spec in self.benchmarks:
            n = spec.sampling.apply(self.sampling).n
            if max(spec.pass_k) > n:
                raise ValueError(f"{spec.name}: pass@{max(spec.pass_k)} needs n >= {max(spec.pass_k)} samples, got {n}")
        if self.budget is not None:
            unknown = [b for b in self.budget.benchmarks if b not in names]
            if unknown:
                raise ValueError(f"budget.benchmarks {unknown} are not among the run's benchmarks {names}")
        return self


class BudgetCurveConfig(BaseModel):
    """Accuracy vs thinking budget (Nano 2's rule: `</think>` after the next newline once the budget is reached)."""

    model_config = ConfigDict(extra="forbid")
    budgets: list[int] = Field(min_length=1, description="thinking-token budgets, e.g. [128, 256, 512, 1024]")
    grace: int = Field(500, ge=0, description="tokens past the budget before the trace is cut without a newline")
    answer_tokens: int = Field(256, ge=1, description="tokens allowed after the trace closes")
    benchmarks: list[str] = Field(default_factory=list, description="which of the run's benchmarks (default: all)")

    @field_validator("budgets")
    @classmethod
    def _sorted(cls, budgets: list[int]) -> list[int]:
        if any(b < 0 for b in budgets):
            raise ValueError("budgets must be >= 0")
        return sorted(set(budgets))


EvalConfig.model_rebuild()


def load_eval_config(path: str | Path) -> EvalConfig:
    from nano2.config import load_yaml_model

    return load_yaml_model(path, EvalConfig)


def known_benchmarks() -> list[str]:
    from evals.benchmarks import BENCHMARKS

    return [*BENCHMARKS, "ifeval", "m_ifeval"]


# ---------------------------------------------------------------------------------------------------------------------
# Items as tasks
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One item of a configured benchmark, with the prompt to send and what scores it.

    `family` is the configured benchmark ("mgsm"), `group` the summary row the item counts in ("mgsm_de").
    """

    family: str
    group: str
    item_id: str
    kind: Kind
    messages: tuple[Mapping[str, str], ...]
    prompt: str
    stop: tuple[str, ...]
    item: Any  # evals.benchmarks.EvalItem or evals.ifeval.IFEvalItem


def _ifeval_tasks(spec: BenchmarkConfig, data_dir: str | Path | None) -> list[Task]:
    from evals.benchmarks import benchmark_path
    from evals.ifeval import load_items

    if spec.name == "ifeval":
        if spec.options:
            raise Nano2Error(f"benchmark ifeval: takes no options, got {sorted(spec.options)}")
        files = [("ifeval", "ifeval", "evals/ifeval_input_data.jsonl")]
    else:
        unknown = sorted(set(spec.options) - {"languages"})
        if unknown:
            raise Nano2Error(f"benchmark m_ifeval: unknown option(s) {unknown}; expected: languages")
        languages = tuple(spec.options.get("languages", IFEVAL_LANGUAGES))
        bad = [lang for lang in languages if lang not in IFEVAL_LANGUAGES]
        if bad:
            raise Nano2Error(f"m_ifeval: unknown language(s) {bad}; expected some of {list(IFEVAL_LANGUAGES)}")
        files = [
            (f"m_ifeval_{lang}", f"m_ifeval/{lang}", f"multilingual/m_ifeval_{lang}_input_data.jsonl")
            for lang in languages
        ]
    tasks = []
    for group, prefix, relative in files:
        for item in load_items(benchmark_path(relative, data_dir)):
            messages = ({"role": "user", "content": item.prompt},)
            tasks.append(Task(spec.name, group, f"{prefix}/{item.key}", "ifeval", messages, item.prompt, (), item))
    return tasks


def benchmark_files(spec: BenchmarkConfig, data_dir: str | Path | None) -> list[Path]:
    """The staged files a benchmark reads (the run's manifest inputs)."""
    from evals.benchmarks import BENCHMARKS, MGSM_LANGUAGES, benchmark_path

    if spec.name == "ifeval":
        relatives: Sequence[str] = ["evals/ifeval_input_data.jsonl"]
    elif spec.name == "m_ifeval":
        languages = spec.options.get("languages", IFEVAL_LANGUAGES)
        relatives = [f"multilingual/m_ifeval_{lang}_input_data.jsonl" for lang in languages]
    elif spec.name == "mgsm":
        relatives = [f"multilingual/mgsm_{lang}.tsv" for lang in spec.options.get("languages", MGSM_LANGUAGES)]
    else:
        relatives = BENCHMARKS[spec.name].files
    return [benchmark_path(relative, data_dir) for relative in relatives]


def load_tasks(spec: BenchmarkConfig, data_dir: str | Path | None = None) -> list[Task]:
    """The items of one configured benchmark: `limit` first items per group, then `ids` if given (file order kept)."""
    from evals.benchmarks import load_benchmark

    if spec.name in ("ifeval", "m_ifeval"):
        tasks = _ifeval_tasks(spec, data_dir)
    else:
        options = dict(spec.options)
        if "languages" in options:
            options["languages"] = tuple(options["languages"])
        tasks = [
            Task(spec.name, item.benchmark, item.id, item.kind, tuple(item.messages), item.prompt, item.stop, item)
            for item in load_benchmark(spec.name, data_dir, **options)
        ]
    if spec.limit is not None:
        taken: dict[str, int] = defaultdict(int)
        limited = []
        for task in tasks:
            if taken[task.group] < spec.limit:
                taken[task.group] += 1
                limited.append(task)
        tasks = limited
    if spec.ids:
        by_id = {task.item_id: task for task in tasks}
        missing = [item_id for item_id in spec.ids if item_id not in by_id]
        if missing:
            example = ", ".join(list(by_id)[:3])
            raise Nano2Error(f"benchmark {spec.name}: item id(s) {missing} not found (ids look like: {example})")
        wanted = set(spec.ids)
        tasks = [task for task in tasks if task.item_id in wanted]
    if not tasks:
        raise Nano2Error(f"benchmark {spec.name}: no items selected")
    return tasks


# ---------------------------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    correct: bool
    verdict: str  # correct/wrong (math, choice), the sandbox verdict (code), followed/not_followed (ifeval)
    extracted: str | None
    detail: dict[str, Any] = field(default_factory=dict)


def visible_answer(text: str, prompt_style: str, thinking: bool | None) -> str:
    """The part of an output that is scored: the answer after the reasoning trace.

    Completion prompts are scored as they stand. A chat output is cut after its last `</think>`; when reasoning was
    asked for and the trace never closed (the budget ran out), there is no answer. Otherwise an unclosed `<think>`
    tail is dropped (a model that was not asked to think but did).
    """
    if prompt_style == "completion":
        return text
    if THINK_END in text:
        return text.rsplit(THINK_END, 1)[1].strip()
    if thinking:
        return ""
    from model.tokenizer import strip_thinking

    return strip_thinking(text)


def _ifeval_follow(item, answer: str) -> dict[str, list[bool]]:
    from evals.ifeval import score_response

    return {
        "strict": score_response(item, answer, loose=False)["follow_list"],
        "loose": score_response(item, answer, loose=True)["follow_list"],
    }


def score_answers(
    pairs: Sequence[tuple[Task, str]], limits: SandboxLimits | None = None, workers: int = 2
) -> list[Verdict]:
    """Score (task, answer text) pairs; code answers run in the sandbox together, with `workers` in parallel."""
    from evals.choice import score_choice
    from evals.code_scoring import extract_code, run_completions
    from evals.math_scoring import score_math

    verdicts: list[Verdict | None] = [None] * len(pairs)
    code_indices = []
    for index, (task, answer) in enumerate(pairs):
        if task.kind == "math":
            score = score_math(task.item.answer, answer)
            verdicts[index] = Verdict(
                score.correct, "correct" if score.correct else "wrong", score.predicted, {"rule": score.rule}
            )
        elif task.kind == "choice":
            score = score_choice(task.item.answer, answer, len(task.item.metadata["choices"]))
            verdicts[index] = Verdict(
                score.correct, "correct" if score.correct else "wrong", score.predicted, {"rule": score.rule}
            )
        elif task.kind == "ifeval":
            follow = _ifeval_follow(task.item, answer)
            ok = all(follow["strict"])
            verdicts[index] = Verdict(ok, "followed" if ok else "not_followed", None, follow)
        elif task.kind == "code":
            code_indices.append(index)
        else:
            raise Nano2Error(f"{task.item_id}: no scorer for kind {task.kind!r}")
    if code_indices:
        results = run_completions([(pairs[i][0].item, pairs[i][1]) for i in code_indices], limits, workers)
        for index, result in zip(code_indices, results, strict=True):
            task, answer = pairs[index]
            code, _ = extract_code(answer, getattr(task.item, "entry_point", None))
            verdicts[index] = Verdict(result.passed, result.verdict, code, {"reason": result.reason[:500]})
    return [v for v in verdicts if v is not None]


# ---------------------------------------------------------------------------------------------------------------------
# Confidence intervals
# ---------------------------------------------------------------------------------------------------------------------


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson_interval(successes: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well behaved at 0 and 1, unlike the normal interval)."""
    if n <= 0 or not 0 <= successes <= n:
        raise Nano2Error(f"wilson_interval needs 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = _z(level)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(
    strata: Sequence[tuple[np.ndarray, np.ndarray]], resamples: int = 2000, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap of mean over strata of sum(numerators) / sum(denominators), resampling items per stratum.

    One stratum with denominators of 1 is the plain mean of per-item values; several strata (languages) give the
    average of per-language scores; instruction-level IFEval is one stratum of (followed, instructions) per item.
    """
    rng = np.random.default_rng(seed)
    totals = np.zeros(resamples)
    for numerators, denominators in strata:
        size = len(numerators)
        if size == 0:
            raise Nano2Error("bootstrap_interval: an empty stratum")
        picks = rng.integers(0, size, size=(resamples, size))
        totals += numerators[picks].sum(axis=1) / denominators[picks].sum(axis=1)
    estimates = totals / len(strata)
    alpha = (1 - level) / 2
    low, high = np.quantile(estimates, [alpha, 1 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class Estimate:
    score: float
    ci_low: float
    ci_high: float
    method: str


def estimate(
    strata: Sequence[tuple[Sequence[float], Sequence[float]]], resamples: int = 2000, seed: int = 0
) -> Estimate:
    """Score and 95% CI: Wilson when every item is one 0/1 outcome (strata of equal size), else the bootstrap."""
    arrays = [(np.asarray(num, dtype=float), np.asarray(den, dtype=float)) for num, den in strata]
    score = float(np.mean([num.sum() / den.sum() for num, den in arrays]))
    binary = all(np.all(den == 1) and np.all((num == 0) | (num == 1)) for num, den in arrays)
    if binary and len({len(num) for num, _ in arrays}) == 1:  # equal-size strata: the mean of means is pooled
        successes = int(sum(num.sum() for num, _ in arrays))
        low, high = wilson_interval(successes, sum(len(num) for num, _ in arrays))
        return Estimate(score, low, high, "wilson")
    low, high = bootstrap_interval(arrays, resamples, seed)
    return Estimate(score, low, high, f"bootstrap({resamples})")


# ---------------------------------------------------------------------------------------------------------------------
# Plan, sample store, summary
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedItem:
    task: Task
    spec: BenchmarkConfig
    sampling: SamplingConfig
    settings: str  # hash of model identity + prompt + sampling

    def key(self, sample: int) -> tuple[str, str, int, str]:
        return (self.task.family, self.task.item_id, sample, self.settings)

    def request(self, key: str, first: int, count: int) -> GenerationRequest:
        s = self.sampling
        completion = self.spec.prompt == "completion"
        sampling = Sampling(
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed + first,
            stop=self.task.stop if completion else (),
            n=count,
        )
        if completion:
            return GenerationRequest(key=key, prompt=self.task.prompt, sampling=sampling)
        return GenerationRequest(
            key=key, messages=tuple(dict(m) for m in self.task.messages), sampling=sampling, thinking=s.thinking
        )


def model_identity(backend: BackendConfig) -> str:
    """What identifies the weights in sample keys: the checkpoint's manifest id when it has one, else its name."""
    path = Path(backend.model)
    if backend.kind == "local" or path.is_dir():
        from nano2.manifest import MANIFEST_NAME, read_manifest

        if (path / MANIFEST_NAME).is_file():
            return f"{backend.kind}:{read_manifest(path).id}"
        return f"{backend.kind}:{path.resolve()}"
    return f"{backend.kind}:{backend.model}"


def settings_hash(identity: str, task: Task, style: str, sampling: SamplingConfig) -> str:
    payload = {
        "model": identity,
        "style": style,
        "input": task.prompt if style == "completion" else [dict(m) for m in task.messages],
        "stop": list(task.stop) if style == "completion" else [],
        "sampling": sampling.model_dump(exclude={"n"}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def plan_run(cfg: EvalConfig, identity: str) -> list[PlannedItem]:
    planned = []
    for spec in cfg.benchmarks:
        sampling = spec.sampling.apply(cfg.sampling)
        for task in load_tasks(spec, cfg.data_dir):
            planned.append(PlannedItem(task, spec, sampling, settings_hash(identity, task, spec.prompt, sampling)))
    return planned


class SampleStore:
    """samples.jsonl as a dict keyed by (benchmark, item id, sample, settings); appends survive a kill."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[tuple[str, str, int, str], dict[str, Any]] = {}
        self.dropped_lines = 0
        if path.is_file():
            self._load()

    @staticmethod
    def key_of(record: Mapping[str, Any]) -> tuple[str, str, int, str]:
        return (record["benchmark"], record["item_id"], int(record["sample"]), record["settings"])

    def _load(self) -> None:
        good_lines = []
        unterminated = False
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                unterminated = not line.endswith("\n")
                try:
                    record = json.loads(line)
                    key = self.key_of(record)
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    self.dropped_lines += 1  # a line cut by a kill: its sample is generated again
                    continue
                self.records[key] = record
                good_lines.append(line if line.endswith("\n") else line + "\n")
        if self.dropped_lines or unterminated:  # appending after a cut line would corrupt the next record
            self.path.write_text("".join(good_lines), encoding="utf-8")

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                self.records[self.key_of(record)] = record

    def rewrite(self) -> None:
        with self.path.open("w", encoding="utf-8") as handle:
            for record in self.records.values():
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _item_samples(planned: PlannedItem, store: SampleStore) -> list[dict[str, Any]]:
    return [r for i in range(planned.sampling.n) if (r := store.records.get(planned.key(i))) is not None]


def _ifeval_dicts(item, follow: Sequence[bool]) -> dict[str, Any]:
    return {
        "follow_all": all(follow),
        "follow_list": list(follow),
        "per_instruction": [
            {"instruction_id": i, "followed": f} for i, f in zip(item.instruction_id_list, follow, strict=True)
        ],
    }


def _group_strata(
    kind: Kind, items: Sequence[tuple[PlannedItem, list[dict[str, Any]]]], spec: BenchmarkConfig
) -> dict[str, tuple[list[float], list[float], float | None]]:
    """metric -> (per-item numerators, per-item denominators, official score) for one group's scored items.

    The official score (IFEval's own `aggregate`) is checked against the score the strata give.
    """
    out: dict[str, tuple[list[float], list[float], float | None]] = {}
    if kind in ("math", "choice"):
        out["accuracy"] = ([float(np.mean([r["correct"] for r in rs])) for _, rs in items], [1.0] * len(items), None)
    elif kind == "code":
        from evals.code_scoring import pass_at_k

        for k in spec.pass_k:
            eligible = [rs for _, rs in items if len(rs) >= k]
            values = [pass_at_k(len(rs), sum(bool(r["correct"]) for r in rs), k) for rs in eligible]
            out[f"pass@{k}"] = (values, [1.0] * len(values), None)
    else:
        from evals.ifeval import aggregate

        strict, loose = [], []
        for planned, rs in items:
            for r in rs:
                strict.append(_ifeval_dicts(planned.task.item, r["detail"]["strict"]))
                loose.append(_ifeval_dicts(planned.task.item, r["detail"]["loose"]))
        accuracy = aggregate(strict, loose)
        official = {
            "prompt_level_strict": accuracy.prompt_strict,
            "instruction_level_strict": accuracy.instruction_strict,
            "prompt_level_loose": accuracy.prompt_loose,
            "instruction_level_loose": accuracy.instruction_loose,
        }
        for metric in IFEVAL_METRICS:
            mode = "strict" if metric.endswith("strict") else "loose"
            if metric.startswith("prompt"):
                values = [float(np.mean([all(r["detail"][mode]) for r in rs])) for _, rs in items]
                out[metric] = (values, [1.0] * len(items), official[metric])
            else:
                followed = [float(sum(sum(r["detail"][mode]) for r in rs)) for _, rs in items]
                counts = [float(sum(len(r["detail"][mode]) for r in rs)) for _, rs in items]
                out[metric] = (followed, counts, official[metric])
    return out


@dataclass
class BenchmarkSummary:
    entries: list[dict[str, Any]]
    ci_methods: dict[str, str]
    missing_items: dict[str, int]


def summarize(planned: Sequence[PlannedItem], store: SampleStore, resamples: int = 2000) -> BenchmarkSummary:
    """Per group (and per family when it has several groups): n items, metric, score and 95% CI."""
    entries: list[dict[str, Any]] = []
    methods: dict[str, str] = {}
    missing: dict[str, int] = defaultdict(int)
    by_family: dict[str, dict[str, list[tuple[PlannedItem, list[dict[str, Any]]]]]] = {}
    for item in planned:
        groups = by_family.setdefault(item.task.family, {})
        samples = _item_samples(item, store)
        if samples:
            groups.setdefault(item.task.group, []).append((item, samples))
        else:
            groups.setdefault(item.task.group, [])
            missing[item.task.group] += 1

    def emit(name: str, metric: str, n: int, result: Estimate) -> None:
        entries.append(
            {
                "name": name,
                "n": n,
                "metric": metric,
                "score": result.score,
                "ci_low": result.ci_low,
                "ci_high": result.ci_high,
            }
        )
        methods[f"{name}/{metric}"] = result.method

    for family, groups in by_family.items():
        scored = {group: items for group, items in groups.items() if items}
        if not scored:
            continue
        first = next(iter(scored.values()))[0][0]
        per_group = {group: _group_strata(first.task.kind, items, first.spec) for group, items in scored.items()}
        for group, metrics in per_group.items():
            for metric, (num, den, official) in metrics.items():
                if not num:
                    continue
                result = estimate([(num, den)], resamples)
                if official is not None and not math.isclose(official, result.score, abs_tol=1e-9):
                    raise Nano2Error(f"{group}/{metric}: internal score mismatch ({official} vs {result.score})")
                emit(group, metric, len(num), result)
        if len(per_group) > 1:  # the family average over groups (MGSM over languages), stratified bootstrap
            for metric in next(iter(per_group.values())):
                strata = [(m[metric][0], m[metric][1]) for m in per_group.values() if m[metric][0]]
                if len(strata) == len(per_group):
                    emit(family, metric, sum(len(s[0]) for s in strata), estimate(strata, resamples))
    return BenchmarkSummary(entries, methods, dict(missing))


# ---------------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------------


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
        pairs.extend((p.task, visible_answer(text, p.spec.prompt, p.sampling.thinking)) for text in response.texts)
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
    targets = [(p, r) for p in planned for r in _item_samples(p, store)]
    if not targets:
        return 0
    pairs = [(p.task, visible_answer(r["output"], p.spec.prompt, p.sampling.thinking)) for p, r in targets]
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
    from evals.sandbox import sandbox_capabilities
    from nano2.manifest import OutputStats, Stats, current_command, input_ref, write_manifest

    inputs = []
    checkpoint = Path(backend_cfg.model)
    if checkpoint.is_dir():
        inputs.append(input_ref(checkpoint))
    inputs.extend(input_ref(path) for path in files)
    by_benchmark: dict[str, Stats] = {}
    samples = tokens = 0
    for p in planned:
        records = _item_samples(p, store)
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
