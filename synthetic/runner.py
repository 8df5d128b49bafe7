"""The synthesis run: stages that turn inputs into requests, send them through the cache, and write parsed rows.

Why not datatrove's `InferenceRunner`: it was read and does not fit cleanly. (1) It talks to engines only over
HTTP, spawning vLLM/SGLang servers itself (its "custom" server is a subprocess behind HTTP too), so neither the
in-process CPU backend nor the vLLM offline engine behind our `Backend` interface (which evals/ share) can drive
it. (2) Its request cache needs `aiosqlite` and its endpoint client `openai`, neither installed, and its replay is
keyed by payload hash within a rank's checkpoint chunks, not by (task, prompt version, model, params, source id,
sample). (3) Our stages depend on each other's artifacts (translate reads DiverseQA rows, truncate reads verified
traces), and verification runs subprocesses: a plain loop is clearer than rollout callbacks. So this is a plain,
resumable runner in datatrove's spirit: generators, small steps, every drop counted with a reason.

How a stage runs: a generator of `Job`s (one request each, built from input documents) is cut into batches; per
batch, answered keys come from the cache, the rest go to the backend (built lazily: a fully cached rerun never
loads a model), and answers are committed before anything is parsed. Each answer is parsed/verified into a row or
a drop. Rows are written in input order and every choice is a hash of ids, so a killed run resumed later writes
exactly the rows an uninterrupted run writes, re-sending only requests that were never committed.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from nano2.errors import Nano2Error
from nano2.manifest import MANIFEST_NAME, InputRef, Manifest, content_hash, input_ref, read_manifest
from synthetic.backends import Backend, BackendConfig, GenerationRequest, GenerationResponse, Sampling, make_backend
from synthetic.cache import RequestCache, request_key
from synthetic.config import GenerationSettings, ProblemInput, SynthConfig
from synthetic.inputs import SourceDoc, iter_documents, iter_problems
from synthetic.prompting import Prompt, load_prompt
from synthetic.records import CHAT_SCHEMA, PREFERENCE_SCHEMA, StageOutput, chat_row, iter_rows, preference_row
from synthetic.tasks import long_context as lc
from synthetic.tasks import preference as pf
from synthetic.tasks import reasoning as rs
from synthetic.tasks import rephrase as rp
from synthetic.tasks import translate as tr
from synthetic.tasks import truncate as tt
from synthetic.tasks.common import (
    Parsed,
    QAPair,
    TokenCounter,
    chunk_by_tokens,
    drop,
    format_qa_pairs,
    parse_qa_pairs,
    split_by_lines,
    token_counter,
)

REFERENCE_MODEL = "reference"  # the `model` of rows whose target is a reference solution, not a generation


@dataclass
class Job:
    """One request and everything needed to turn its answer into a row."""

    task: str
    source_id: str
    sample_index: int
    prompt: Prompt
    messages: list[dict[str, str]]
    sampling: Sampling
    thinking: bool | None
    payload: dict[str, Any] = field(default_factory=dict)

    def key_fields(self, model: str) -> dict[str, Any]:
        return {
            "task": self.task,
            "prompt_version": self.prompt.tag,
            "prompt_hash": self.prompt.text_hash,
            "model": model,
            "sampling": self.sampling.to_dict(),
            "source_id": self.source_id,
            "sample_index": self.sample_index,
        }


@dataclass
class RequestStats:
    jobs: int = 0
    cached: int = 0
    sent: int = 0
    failed: int = 0
    skipped_failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def model_identity(cfg: BackendConfig) -> str:
    """What names the weights in cache keys and rows: a local checkpoint by its manifest id (retraining the teacher
    at the same path must not reuse answers), a served or hub model by its name."""
    if cfg.kind != "local":
        return cfg.model
    path = Path(cfg.model)
    if (path / MANIFEST_NAME).exists():
        return f"{path.name}@{read_manifest(path).id}"
    if not path.is_dir():
        raise Nano2Error(
            f"backend.model {path}: local checkpoint directory not found (the tiny recipe fine-tunes its format "
            "teacher there from `nano2 synth teacher-data` rows)"
        )
    return f"{path.name}@{content_hash(path)[:20]}"


def _batches(items: Iterable[Job], size: int) -> Iterator[list[Job]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


class Generator:
    """Send jobs through the cache and the (lazily built) backend, batch by batch."""

    def __init__(
        self,
        backend_factory: Callable[[], Backend],
        cache: RequestCache,
        model: str,
        batch_size: int,
        retry_failed: bool = True,
        on_batch: Callable[[RequestStats], None] | None = None,
    ):
        self._factory = backend_factory
        self._backend: Backend | None = None
        self.cache = cache
        self.model = model
        self.batch_size = batch_size
        self.retry_failed = retry_failed
        self.on_batch = on_batch
        self.stats = RequestStats()

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self._factory()
        return self._backend

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, GenerationResponse]]:
        for batch in _batches(jobs, self.batch_size):
            fields = [job.key_fields(self.model) for job in batch]
            keys = [request_key(**f) for f in fields]
            answers = self.cache.get_many(keys)
            self.stats.cached += sum(1 for k in keys if k in answers)
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # a repeated request is sent once
            missing = [i for i, k in enumerate(keys) if k not in answers and first[k] == i]
            if missing and not self.retry_failed:
                earlier = self.cache.failed_keys([keys[i] for i in missing])
                for i in [i for i in missing if keys[i] in earlier]:
                    answers[keys[i]] = GenerationResponse(key=keys[i], texts=[], error=earlier[keys[i]], attempts=0)
                    self.stats.skipped_failed += 1
                missing = [i for i in missing if keys[i] not in earlier]
            self.stats.jobs += len(batch)
            if missing:
                requests = [
                    GenerationRequest(
                        key=keys[i],
                        messages=tuple(batch[i].messages),
                        sampling=batch[i].sampling,
                        thinking=batch[i].thinking,
                    )
                    for i in missing
                ]
                responses = self.backend.generate(requests)
                if len(responses) != len(requests) or [r.key for r in responses] != [r.key for r in requests]:
                    name = self.backend.name
                    raise Nano2Error(f"backend {name}: {len(responses)} answers to {len(requests)} requests")
                self.cache.store((fields[i], r) for i, r in zip(missing, responses, strict=True))
                for r in responses:
                    answers[r.key] = r
                    self.stats.sent += 1
                    self.stats.failed += 0 if r.ok else 1
                    self.stats.prompt_tokens += r.prompt_tokens
                    self.stats.completion_tokens += sum(r.completion_tokens)
            if self.on_batch is not None:
                self.on_batch(self.stats)
            for job, key in zip(batch, keys, strict=True):
                yield job, answers[key]

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def _sampling(settings: GenerationSettings, seed: int, sample_index: int) -> Sampling:
    return Sampling(
        max_tokens=settings.max_output_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=seed + sample_index,
        n=1,
    )


def answer_problem(response: GenerationResponse, settings: GenerationSettings) -> Parsed | None:
    """The generic checks before a task parser: a backend error, or an output cut by the token limit."""
    if not response.ok:
        return drop("backend_error", error=(response.error or "")[:300], attempts=response.attempts)
    if not response.texts:
        return drop("empty_response")
    if settings.drop_truncated and response.finish_reasons and response.finish_reasons[0] == "length":
        return drop("output_truncated", max_output_tokens=settings.max_output_tokens)
    return None


@dataclass
class StageContext:
    cfg: SynthConfig
    config_path: str | None
    counter: TokenCounter
    generator: Generator

    @property
    def model(self) -> str:
        return self.generator.model

    def output(self, stage: str, partition_key: str, schema: pa.Schema = CHAT_SCHEMA) -> StageOutput:
        return StageOutput(self.cfg.stage_dir(stage), partition_key, self.counter, schema=schema)

    def finish(self, out: StageOutput, stage: str, inputs: list[InputRef], before: RequestStats, **extra) -> Manifest:
        now = self.generator.stats.as_dict()
        requests = {k: now[k] - v for k, v in before.as_dict().items()}
        return out.close(
            name=f"{self.cfg.name}-{stage}",
            config=self.cfg,
            config_path=self.config_path,
            inputs=inputs,
            extra={
                "stage": stage,
                "requests": requests,
                "backend": {"kind": self.cfg.backend.kind, "model": self.model},
                "seed": self.cfg.seed,
                "tokenizer": self.cfg.tokenizer,
                **extra,
            },
        )


def _snapshot(stats: RequestStats) -> RequestStats:
    return RequestStats(**stats.as_dict())


def unique(docs: Iterable[SourceDoc]) -> Iterator[SourceDoc]:
    """Each document id once (an id seen again, e.g. from overlapping inputs, is skipped)."""
    seen: set[str] = set()
    for doc in docs:
        if doc.id not in seen:
            seen.add(doc.id)
            yield doc


def _refs(paths: Iterable[str | Path]) -> list[InputRef]:
    return [input_ref(p) for p in dict.fromkeys(str(p) for p in paths)]


# ------------------------------------------------------------------------------------------------ rephrase


def run_rephrase(ctx: StageContext) -> Manifest:
    cfg = ctx.cfg.rephrase
    before = _snapshot(ctx.generator.stats)
    out = ctx.output("rephrase", "task")
    prompts = {task: load_prompt(task) for task in (*cfg.high_tasks, *cfg.low_tasks)}

    def jobs() -> Iterator[Job]:
        for doc in unique(d for spec in cfg.inputs for d in iter_documents(spec)):
            url = doc.metadata.get("url")
            if not doc.text.strip():
                out.drop("routing", doc.id, "empty_document", url=url)
                continue
            routed = rp.route(doc.metadata, cfg.high_bucket_min, cfg.high_tasks, cfg.low_tasks)
            if not routed.ok:
                out.drop("routing", doc.id, routed.drop or "", routed.details, url=url)
                continue
            for task in routed.value:
                settings = cfg.tasks[task]
                segments = split_by_lines(doc.text, settings.max_input_tokens, ctx.counter)
                for si, segment in enumerate(segments):
                    source_id = doc.id if len(segments) == 1 else f"{doc.id}#s{si}"
                    for sample in range(settings.samples):
                        yield Job(
                            task=task,
                            source_id=source_id,
                            sample_index=sample,
                            prompt=prompts[task],
                            messages=prompts[task].messages(False, document=segment),
                            sampling=_sampling(settings, ctx.cfg.seed, sample),
                            thinking=False,
                            payload={"document": segment, "doc": doc, "segment": si, "segments": len(segments)},
                        )

    for job, response in ctx.generator.run(jobs()):
        doc: SourceDoc = job.payload["doc"]
        settings = cfg.tasks[job.task]
        url = doc.metadata.get("url")
        parsed = answer_problem(response, settings) or rp.parse_rephrase(
            job.task, response.texts[0], job.payload["document"]
        )
        if not parsed.ok:
            out.drop(job.task, f"{job.source_id}/{job.sample_index}", parsed.drop or "", parsed.details, url=url)
            continue
        if job.task == "diverse_qa":
            target = format_qa_pairs(parsed.value)
            text = rp.diverse_qa_text(
                job.payload["document"], parsed.value, cfg.diverse_qa_max_pairs, ctx.cfg.seed, job.source_id
            )
        else:
            target = text = parsed.value
        metadata = {
            "source_document": doc.id,
            "url": url,
            "bucket": doc.metadata.get("bucket"),
            "level": doc.metadata.get("level"),
            "segment": job.payload["segment"],
            "segments": job.payload["segments"],
            "finish_reason": response.finish_reasons[0] if response.finish_reasons else None,
            **parsed.details,
        }
        out.add(
            chat_row(
                row_id=f"{job.task}/{job.source_id}/{job.sample_index}",
                messages=[*job.messages, {"role": "assistant", "content": target}],
                reasoning=False,
                task=job.task,
                source_id=job.source_id,
                prompt_version=job.prompt.tag,
                model=ctx.model,
                sampling=job.sampling.to_dict(),
                metadata=metadata,
                text=text,
            ),
            partition=job.task,
        )
    prompts_used = {t: p.tag for t, p in prompts.items()}
    return ctx.finish(out, "rephrase", _refs(s.path for s in cfg.inputs), before, prompts=prompts_used)


# ------------------------------------------------------------------------------------------------ translate


def run_translate(ctx: StageContext) -> Manifest:
    cfg = ctx.cfg.translate
    source_dir = ctx.cfg.stage_dir("rephrase")
    if not (source_dir / MANIFEST_NAME).exists():
        raise Nano2Error(f"translate: {source_dir} has no manifest; run the rephrase stage first")
    before = _snapshot(ctx.generator.stats)
    out = ctx.output("translate", "language")
    prompt = load_prompt("translate")
    rows = itertools.islice(iter_rows(source_dir, where="task=diverse_qa"), cfg.max_documents)

    def jobs() -> Iterator[Job]:
        for row in rows:
            block = row["messages"][-1]["content"]
            parsed = parse_qa_pairs(block)
            if not parsed.ok:
                out.drop("translate", row["id"], f"source_{parsed.drop}")
                continue
            if ctx.counter.count(block) > cfg.settings.max_input_tokens:
                out.drop("translate", row["id"], "input_too_long", {"max_input_tokens": cfg.settings.max_input_tokens})
                continue
            languages = tr.target_languages(cfg.languages, cfg.languages_per_document, ctx.cfg.seed, row["id"])
            for language in languages:
                for sample in range(cfg.settings.samples):
                    yield Job(
                        task="translate",
                        source_id=f"{row['id']}@{language}",
                        sample_index=sample,
                        prompt=prompt,
                        messages=prompt.messages(False, language=tr.LANGUAGE_NAMES[language], qa=block),
                        sampling=_sampling(cfg.settings, ctx.cfg.seed, sample),
                        thinking=False,
                        payload={"row": row, "pairs": parsed.value, "language": language},
                    )

    for job, response in ctx.generator.run(jobs()):
        language = job.payload["language"]
        parsed = answer_problem(response, cfg.settings) or tr.parse_translation(
            response.texts[0], job.payload["pairs"], language, cfg.min_language_score
        )
        if not parsed.ok:
            out.drop("translate", f"{job.source_id}/{job.sample_index}", parsed.drop or "", parsed.details)
            continue
        target = format_qa_pairs(parsed.value)
        source = job.payload["row"]
        out.add(
            chat_row(
                row_id=f"translate/{job.source_id}/{job.sample_index}",
                messages=[*job.messages, {"role": "assistant", "content": target}],
                reasoning=False,
                task="translate",
                source_id=job.source_id,
                prompt_version=job.prompt.tag,
                model=ctx.model,
                sampling=job.sampling.to_dict(),
                metadata={"language": language, "source_row": source["id"], **parsed.details},
                text=target,
            ),
            partition=language,
        )
    return ctx.finish(out, "translate", _refs([source_dir]), before, prompts={"translate": prompt.tag})


# ------------------------------------------------------------------------------------------------ reasoning


def _tests(value: Any) -> list[str]:
    if isinstance(value, str):
        return [line for line in value.splitlines() if line.strip()]
    return [str(t) for t in (value or []) if str(t).strip()]


def _reference(problem: SourceDoc, spec: ProblemInput) -> str | None:
    raw = problem.metadata.get(spec.answer_key or "")
    if raw is None:
        return None
    return rs.gsm8k_gold(str(raw)) if spec.answer_format == "gsm8k" else str(raw).strip() or None


def _reference_solution(problem: SourceDoc, spec: ProblemInput) -> tuple[str, str] | None:
    """A GSM8K-style reference solution as (trace, `\\boxed{gold}`): real reasoning text with its checked answer."""
    solution = str(problem.metadata.get(spec.answer_key or "") or "")
    trace = rs.gsm8k_trace(solution)
    gold = rs.gsm8k_gold(solution)
    return None if trace is None or gold is None else (trace[0], f"\\boxed{{{gold}}}")


def _problem_drop(problem: SourceDoc, spec: ProblemInput) -> str | None:
    """Why a problem cannot be asked (nothing to verify an answer against), or None."""
    if not problem.text.strip():
        return "empty_problem"
    if spec.kind == "math" and _reference(problem, spec) is None:
        return "no_reference_answer"
    if spec.kind == "code" and not _tests(problem.metadata.get(spec.tests_key or "")):
        return "no_tests"
    return None


def _verify_answer(payload: dict[str, Any], answer: str, code_timeout_s: float) -> Parsed:
    if payload["kind"] == "math":
        return rs.verify_math(answer, payload["reference"])
    return rs.verify_code(answer, payload["tests"], payload["setup"], code_timeout_s)


def _problem_job(
    problem: SourceDoc,
    spec: ProblemInput,
    seed: int,
    settings: GenerationSettings,
    sample: int,
    task: str = "reasoning_sft",
) -> Job:
    if spec.kind == "math":
        prompt = load_prompt("reasoning_math")
        fields = {"problem": problem.text.strip()}
        payload = {"reference": _reference(problem, spec)}
    else:
        prompt = load_prompt("reasoning_code")
        tests = _tests(problem.metadata.get(spec.tests_key or ""))
        fields = {"problem": problem.text.strip(), "tests": "\n".join(tests)}
        setup = str(problem.metadata.get(spec.setup_key or "") or "") if spec.setup_key else ""
        payload = {"tests": tests, "setup": setup}
    return Job(
        task=task,
        source_id=problem.id,
        sample_index=sample,
        prompt=prompt,
        messages=prompt.messages(True, **fields),
        sampling=_sampling(settings, seed, sample),
        thinking=True,
        payload={**payload, "kind": spec.kind, "fields": fields, "problem": problem},
    )


def run_reasoning(ctx: StageContext) -> Manifest:
    cfg = ctx.cfg.reasoning
    before = _snapshot(ctx.generator.stats)
    out = ctx.output("reasoning", "task")

    def jobs() -> Iterator[Job]:
        for spec in cfg.inputs:
            for problem in unique(iter_problems(spec)):
                reason = _problem_drop(problem, spec)
                if reason is not None:
                    out.drop("reasoning_sft", problem.id, reason)
                    continue
                for sample in range(cfg.settings.samples):
                    yield _problem_job(problem, spec, ctx.cfg.seed, cfg.settings, sample)

    for job, response in ctx.generator.run(jobs()):
        parsed = answer_problem(response, cfg.settings) or rs.split_reasoning(response.texts[0])
        if parsed.ok:
            verdict = _verify_answer(job.payload, parsed.value[1], cfg.code_timeout_s)
            parsed = verdict if not verdict.ok else parsed
        if not parsed.ok:
            out.drop("reasoning_sft", f"{job.source_id}/{job.sample_index}", parsed.drop or "", parsed.details)
            continue
        trace, answer = parsed.value
        empty = rs.gets_empty_trace(cfg.empty_trace_share, ctx.cfg.seed, job.source_id, job.sample_index)
        if empty:
            prompt_turns = job.prompt.messages(False, **job.payload["fields"])
            target = answer
        else:
            prompt_turns, target = job.messages, rs.reasoning_target(trace, answer)
        out.add(
            chat_row(
                row_id=f"reasoning_sft/{job.source_id}/{job.sample_index}",
                messages=[*prompt_turns, {"role": "assistant", "content": target}],
                reasoning=not empty,
                task="reasoning_sft",
                source_id=job.source_id,
                prompt_version=job.prompt.tag,
                model=ctx.model,
                sampling=job.sampling.to_dict(),
                metadata={
                    "kind": job.payload["kind"],
                    "reference": job.payload.get("reference"),
                    "empty_trace": empty,
                    "trace_tokens": ctx.counter.count(trace),
                },
            ),
            partition="reasoning_sft",
        )
    return ctx.finish(out, "reasoning", _refs(s.path for s in cfg.inputs), before)


# ------------------------------------------------------------------------------------------------ preference


def run_preference(ctx: StageContext) -> Manifest:
    """DPO pairs: `samples` completions per problem, each verified; chosen = the first verified (or the reference
    solution when none is and `reference_fallback` is on), rejected = the first failed. One row or one counted drop
    per problem."""
    cfg = ctx.cfg.preference
    before = _snapshot(ctx.generator.stats)
    out = ctx.output("preference", "task", schema=PREFERENCE_SCHEMA)
    verdicts_seen: Counter[str] = Counter()
    origins: Counter[str] = Counter()

    def jobs() -> Iterator[Job]:
        for spec_index, spec in enumerate(cfg.inputs):
            for problem in unique(iter_problems(spec)):
                reason = _problem_drop(problem, spec)
                if reason is not None:
                    out.drop("preference", problem.id, reason)
                    continue
                reference = _reference_solution(problem, spec) if spec.kind == "math" else None
                for sample in range(cfg.settings.samples):
                    job = _problem_job(problem, spec, ctx.cfg.seed, cfg.settings, sample, task="preference")
                    job.payload.update(group=(spec_index, problem.id), reference_solution=reference)
                    yield job

    answered = ctx.generator.run(jobs())
    previous: tuple[str, str] | None = None  # (gold answer, reference target) of the last problem with a reference
    for _, group in itertools.groupby(answered, key=lambda pair: pair[0].payload["group"]):
        samples = list(group)
        first: Job = samples[0][0]
        verdicts = []
        for job, response in samples:
            unusable = answer_problem(response, cfg.settings)
            if unusable is not None:
                verdicts.append(pf.unusable_sample(job.sample_index, unusable.drop or ""))
                continue
            verify = functools.partial(_verify_answer, job.payload, code_timeout_s=cfg.code_timeout_s)
            verdicts.append(pf.judge_sample(job.sample_index, response.texts[0], verify))
        verdicts_seen.update(v.reason for v in verdicts)
        solution = first.payload["reference_solution"] if cfg.reference_fallback else None
        reference_target = rs.reasoning_target(*solution) if solution else None
        pair = pf.choose_pair(verdicts, reference_target)
        gold = first.payload.get("reference")
        # nothing usable from the model: the previous problem's reference (a different, so verifiably wrong,
        # answer) is the rejected side of this problem's reference
        fallback = not pair.ok and pair.drop == "no_usable_samples" and cfg.mismatched_fallback
        if fallback and reference_target and previous is not None and previous[0] != gold:
            pair = pf.mismatched_pair(reference_target, previous[1], pair.details)
        if reference_target and gold is not None:
            previous = (gold, reference_target)
        if not pair.ok:
            details = {**pair.details, "reference_solution": solution is not None}
            out.drop("preference", first.source_id, pair.drop or "", details)
            continue
        picked: pf.PreferencePair = pair.value
        origins[picked.chosen_origin] += 1
        out.add(
            preference_row(
                row_id=f"preference/{first.source_id}",
                prompt=first.messages,
                chosen=picked.chosen,
                rejected=picked.rejected,
                reasoning=True,
                task="preference",
                source_id=first.source_id,
                prompt_version=first.prompt.tag,
                model=ctx.model,
                sampling=first.sampling.to_dict(),  # sample i used seed + i
                metadata={
                    "kind": first.payload["kind"],
                    "reference": first.payload.get("reference"),
                    "chosen_origin": picked.chosen_origin,
                    "chosen_sample": picked.chosen_sample,
                    "rejected_sample": picked.rejected_sample,
                    "rejected_reason": picked.rejected_reason,
                    "sample_verdicts": [v.reason for v in sorted(verdicts, key=lambda v: v.index)],
                    "chosen_tokens": ctx.counter.count(picked.chosen),
                    "rejected_tokens": ctx.counter.count(picked.rejected),
                },
            ),
            partition="preference",
        )
    return ctx.finish(
        out,
        "preference",
        _refs(s.path for s in cfg.inputs),
        before,
        sample_verdicts=dict(sorted(verdicts_seen.items())),
        chosen_origin=dict(sorted(origins.items())),
    )


# ------------------------------------------------------------------------------------------------ truncate


def run_truncate(ctx: StageContext) -> Manifest:
    """No requests: verified traces (this config's reasoning rows, and reference solutions) cut to budgets."""
    cfg = ctx.cfg.truncate
    before = _snapshot(ctx.generator.stats)
    out = ctx.output("truncate", "task")
    reasoning_dir = ctx.cfg.stage_dir("reasoning")
    inputs: list[str | Path] = [*([reasoning_dir] if cfg.from_reasoning else []), *(s.path for s in cfg.gold_inputs)]
    if cfg.from_reasoning and not (reasoning_dir / MANIFEST_NAME).exists():
        raise Nano2Error(f"truncate: {reasoning_dir} has no manifest; run the reasoning stage first")
    prompt = load_prompt("reasoning_math")

    def sources() -> Iterator[tuple[str, list[dict[str, str]], str, str, dict[str, Any]]]:
        """(source id, prompt turns, trace, answer, origin) of every verified trace."""
        if cfg.from_reasoning:
            for row in iter_rows(reasoning_dir):
                split = rs.parse_target(row["messages"][-1]["content"]) if row["reasoning"] else None
                if split is not None:
                    origin = {"origin": "reasoning_sft", "model": row["model"], "sampling": row["sampling"],
                              "prompt": row["prompt_version"]}  # fmt: skip
                    yield row["id"], row["messages"][:-1], *split, origin
        for spec in cfg.gold_inputs:
            for problem in iter_problems(spec):
                solution = _reference_solution(problem, spec)
                if solution is None or not problem.text.strip():
                    out.drop("truncate_traces", problem.id, "no_reference_solution")
                    continue
                origin = {"origin": "reference_solution", "model": REFERENCE_MODEL, "sampling": "{}",
                          "prompt": prompt.tag}  # fmt: skip
                messages = prompt.messages(True, problem=problem.text.strip())
                yield problem.id, messages, *solution, origin

    for source_id, prompt_turns, trace, answer, origin in sources():
        if not tt.gets_truncated(cfg.share, ctx.cfg.seed, source_id):
            continue
        cut = tt.truncated_sample(trace, answer, cfg.budget_min, cfg.budget_max, ctx.cfg.seed, source_id, ctx.counter)
        if not cut.ok:
            out.drop("truncate_traces", source_id, cut.drop or "", cut.details)
            continue
        out.add(
            chat_row(
                row_id=f"truncate_traces/{source_id}",
                messages=[*prompt_turns, {"role": "assistant", "content": cut.value}],
                reasoning=True,
                task="truncate_traces",
                source_id=source_id,
                prompt_version=origin["prompt"],
                model=origin["model"],
                sampling=json.loads(origin["sampling"] or "{}"),
                metadata={"origin": origin["origin"], **cut.details},
            ),
            partition="truncate_traces",
        )
    return ctx.finish(out, "truncate", _refs(inputs), before)


# ------------------------------------------------------------------------------------------------ long context


def run_long_context(ctx: StageContext) -> Manifest:
    cfg = ctx.cfg.long_context
    before = _snapshot(ctx.generator.stats)
    out = ctx.output("long_context", "task")
    prompt = load_prompt("long_context_qa")
    expected: dict[str, int] = {}

    def documents() -> Iterator[SourceDoc]:
        taken = 0
        for doc in unique(d for spec in cfg.inputs for d in iter_documents(spec)):
            if cfg.max_documents is not None and taken >= cfg.max_documents:
                return
            tokens = ctx.counter.count(doc.text)
            if tokens < cfg.min_document_tokens:
                out.drop("long_context_qa", doc.id, "document_too_short", {"tokens": tokens})
                continue
            taken += 1
            yield doc

    def jobs() -> Iterator[Job]:
        for doc in documents():
            chunks = chunk_by_tokens(doc.text, cfg.chunk_tokens, ctx.counter)
            chosen = lc.choose_chunks(len(chunks), cfg.qa_share, ctx.cfg.seed, doc.id)
            expected[doc.id] = len(chosen) * cfg.settings.samples
            for index in chosen:
                for sample in range(cfg.settings.samples):
                    yield Job(
                        task="long_context_qa",
                        source_id=f"{doc.id}#c{index}",
                        sample_index=sample,
                        prompt=prompt,
                        messages=prompt.messages(False, chunk=chunks[index]),
                        sampling=_sampling(cfg.settings, ctx.cfg.seed, sample),
                        thinking=False,
                        payload={"doc": doc, "chunk": index, "chunks": len(chunks)},
                    )

    pending: dict[str, list[tuple[int, list[QAPair]]]] = {}
    for job, response in ctx.generator.run(jobs()):
        doc: SourceDoc = job.payload["doc"]
        parsed = answer_problem(response, cfg.settings) or parse_qa_pairs(response.texts[0])
        got = pending.setdefault(doc.id, [])
        if parsed.ok:
            got.append((job.payload["chunk"], parsed.value))
        else:
            out.drop("long_context_qa", f"{job.source_id}/{job.sample_index}", parsed.drop or "", parsed.details)
            got.append((job.payload["chunk"], []))
        if len(got) < expected[doc.id]:
            continue
        pairs = [p for _, chunk_pairs in pending.pop(doc.id) for p in chunk_pairs]
        if not pairs:
            out.drop("long_context_qa", doc.id, "no_valid_qa", {"chunks_asked": expected[doc.id]})
            continue
        qa_block = format_qa_pairs(pairs)
        out.add(
            chat_row(
                row_id=f"long_context_qa/{doc.id}",
                messages=[
                    {"role": "system", "content": "/no_think"},
                    {"role": "user", "content": doc.text},
                    {"role": "assistant", "content": qa_block},
                ],
                reasoning=False,
                task="long_context_qa",
                source_id=doc.id,
                prompt_version=prompt.tag,
                model=ctx.model,
                sampling=job.sampling.to_dict(),
                metadata={
                    "url": doc.metadata.get("url"),
                    "chunks": job.payload["chunks"],
                    "chunk_tokens": cfg.chunk_tokens,
                    "qa_chunks": sorted({c for c, ps in got if ps}),
                    "qa_pairs": len(pairs),
                },
                text=lc.append_qa(doc.text, pairs),
            ),
            partition="long_context_qa",
        )
    return ctx.finish(out, "long_context", _refs(s.path for s in cfg.inputs), before, prompts={"qa": prompt.tag})


STAGE_RUNNERS: dict[str, Callable[[StageContext], Manifest]] = {
    "rephrase": run_rephrase,
    "translate": run_translate,
    "reasoning": run_reasoning,
    "preference": run_preference,
    "truncate": run_truncate,
    "long_context": run_long_context,
}


@dataclass
class RunResult:
    manifests: dict[str, Manifest]
    requests: RequestStats
    drops: dict[str, dict[str, int]] = field(default_factory=dict)


def run_synthesis(
    cfg: SynthConfig,
    config_path: str | Path | None = None,
    stages: Iterable[str] | None = None,
    backend_factory: Callable[[], Backend] | None = None,
    on_batch: Callable[[str, RequestStats], None] | None = None,
) -> RunResult:
    """Run the enabled stages (or the given ones) in order; returns each stage's manifest and the request counts."""
    chosen = list(stages) if stages else cfg.enabled_stages()
    unknown = [s for s in chosen if s not in STAGE_RUNNERS]
    if unknown:
        raise Nano2Error(f"unknown stage {unknown[0]!r}; expected some of {', '.join(STAGE_RUNNERS)}")
    disabled = [s for s in chosen if not getattr(cfg, s).enabled]
    if disabled:
        raise Nano2Error(f"stage {disabled[0]!r} is not enabled in the config")
    counter = token_counter(cfg.tokenizer)
    model = model_identity(cfg.backend)
    cache = RequestCache(Path(cfg.output_dir) / ".cache" / "requests.sqlite")
    current = {"stage": ""}
    generator = Generator(
        backend_factory or (lambda: make_backend(cfg.backend)),
        cache,
        model,
        cfg.batch_size,
        retry_failed=cfg.retry_failed,
        on_batch=(lambda stats: on_batch(current["stage"], stats)) if on_batch else None,
    )
    ctx = StageContext(cfg, str(config_path) if config_path else None, counter, generator)
    manifests: dict[str, Manifest] = {}
    drops: dict[str, dict[str, int]] = {}
    try:
        for stage in [s for s in STAGE_RUNNERS if s in chosen]:
            current["stage"] = stage
            manifests[stage] = STAGE_RUNNERS[stage](ctx)
            for task, reasons in manifests[stage].extra.get("drops", {}).items():
                drops.setdefault(task, Counter()).update(reasons)
    finally:
        generator.close()
        cache.close()
    return RunResult(manifests, generator.stats, {t: dict(r) for t, r in drops.items()})
