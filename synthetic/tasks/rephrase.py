"""Nemotron-CC rephrasing: route crawl documents by quality bucket, parse and validate what the model wrote.

Routing (paper-facts §4): curation writes each English document's ensemble bucket (0-19, `metadata.bucket`) and
level. Buckets at or above `high_bucket_min` go to the four high-quality tasks (`diverse_qa`, `distill`,
`extract_knowledge`, `knowledge_list`), the rest to `wiki_paraphrase`. NeMo Curator's tutorial uses bucket > 11
(`high_bucket_min: 12`); the newer Nemotron-CC recipe generates only from buckets 18-19. A document without a
bucket (unscored, or not English) is not routed and is counted as a drop.

Pretraining text: a DiverseQA document is the source document followed by a subset of the generated pairs (NeMo
Curator's post-processing: at least one, at most `max_pairs`, chosen by hash here instead of a global RNG); the
other tasks' documents are the rewritten text itself. Each is written as a contract document in `subset=<task>`,
with the source document as its parent and the source's URL, date, language, level and bucket carried over.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from nano2.contracts.documents import Meta
from nano2.manifest import Manifest
from synthetic.config import HIGH_TASKS, LOW_TASKS
from synthetic.config import REPHRASE_TASKS as REPHRASE_TASKS  # re-exported: the task names live in the config
from synthetic.inputs import SourceDoc, iter_documents
from synthetic.prompting import load_prompt
from synthetic.stage import Job, StageContext, carried_metadata, input_refs, job_sampling, unique
from synthetic.tasks.common import (
    Parsed,
    QAPair,
    answer_problem,
    check_prose,
    drop,
    format_qa_pairs,
    keep,
    parse_qa_pairs,
    pick_int,
    split_by_lines,
    unit_hash,
)


def document_bucket(metadata: Mapping[str, Any]) -> int | None:
    """The ensemble quality bucket curation wrote, or None (unscored documents have none)."""
    value = metadata.get(Meta.BUCKET)
    if isinstance(value, bool) or value is None:
        return None
    try:
        bucket = int(value)
    except (TypeError, ValueError):
        return None
    return bucket if 0 <= bucket <= 19 else None


def route(metadata: Mapping[str, Any], high_bucket_min: int, high_tasks=HIGH_TASKS, low_tasks=LOW_TASKS) -> Parsed:
    """The tasks a document goes to, or a drop reason when it has no usable bucket."""
    bucket = document_bucket(metadata)
    if bucket is None:
        return drop("no_quality_bucket", level=metadata.get(Meta.LEVEL))
    tasks = tuple(high_tasks) if bucket >= high_bucket_min else tuple(low_tasks)
    return keep(tasks, bucket=bucket)


_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|here(?:'s| is| are)|below is|the following)\b[^\n]{0,120}:\s*\n", re.IGNORECASE
)


def strip_preamble(text: str) -> str:
    """Remove one chatty lead-in line such as 'Here is a paraphrased version:'."""
    return _PREAMBLE.sub("", (text or "").strip(), count=1).strip()


def parse_diverse_qa(output: str, document: str) -> Parsed:
    parsed = parse_qa_pairs(strip_preamble(output))
    if not parsed.ok:
        return parsed
    pairs: list[QAPair] = parsed.value
    if len({p.question.lower() for p in pairs}) < len(pairs):
        return drop("duplicate_questions", pairs=len(pairs))
    return parsed


def parse_prose(output: str, document: str) -> Parsed:
    return check_prose(strip_preamble(output), document)


def parse_knowledge_list(output: str, document: str) -> Parsed:
    """Bullets (`- ` or `* `), one fact each; indented continuation lines join their bullet."""
    lines = strip_preamble(output).splitlines()
    items: list[str] = []
    stray = 0
    for line in lines:
        if not line.strip():
            continue
        bullet = re.match(r"^\s*[-*•]\s+(.*)$", line)
        if bullet:
            items.append(bullet.group(1).strip())
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + line.strip()
        else:
            stray += 1
    if not items:
        return drop("no_bullets" if lines else "empty_output")
    if stray > max(1, len(items) // 4):
        return drop("text_outside_list", bullets=len(items), stray_lines=stray)
    items = [i for i in items if i]
    if not items:
        return drop("empty_bullets")
    if len({i.lower() for i in items}) < len(items):
        return drop("duplicate_bullets", bullets=len(items))
    text = "\n".join(f"- {i}" for i in items)
    checked = check_prose(text, document, min_words=3)
    return checked if not checked.ok else keep(text, bullets=len(items))


PARSERS = {
    "diverse_qa": parse_diverse_qa,
    "distill": parse_prose,
    "extract_knowledge": parse_prose,
    "knowledge_list": parse_knowledge_list,
    "wiki_paraphrase": parse_prose,
}


def parse_rephrase(task: str, output: str, document: str) -> Parsed:
    return PARSERS[task](output, document)


def diverse_qa_text(document: str, pairs: list[QAPair], max_pairs: int, seed: int, source_id: str) -> str:
    """The DiverseQA pretraining document: the source text, then 1..max_pairs of its pairs in a hashed order."""
    order = sorted(range(len(pairs)), key=lambda i: unit_hash(seed, source_id, "qa-order", i))
    n = pick_int(1, max(1, min(max_pairs, len(pairs))), seed, source_id, "qa-count")
    return f"{document.strip()}\n\n{format_qa_pairs([pairs[i] for i in order[:n]])}"


def appended_qa_pairs(text: str, max_pairs: int) -> list[QAPair]:
    """The pairs a DiverseQA document carries (`diverse_qa_text`'s inverse): its trailing blank-line-separated blocks
    that are each one pair exactly as `format_qa_pairs` writes it, at most `max_pairs` (the most ever appended).

    A source page that itself ends in such blocks can lend some of its own pairs to the count: they are English QA
    about the same document, so translating them is harmless.
    """
    blocks = text.split("\n\n")[1:]  # the first block is the source document's start, never an appended pair
    pairs: list[QAPair] = []
    for block in reversed(blocks):
        if len(pairs) == max_pairs:
            break
        parsed = parse_qa_pairs(block, max_preamble_lines=0)
        if not parsed.ok or len(parsed.value) != 1 or format_qa_pairs(parsed.value) != block:
            break
        pairs.append(parsed.value[0])
    return pairs[::-1]


def run_rephrase(ctx: StageContext) -> Manifest:
    """Route each input document by its bucket, ask every task it is routed to (long documents in segments), and
    write each parsed answer as a pretraining document in `subset=<task>`."""
    cfg = ctx.cfg.rephrase
    before = ctx.snapshot()
    out = ctx.documents("rephrase")
    prompts = {task: load_prompt(task) for task in (*cfg.high_tasks, *cfg.low_tasks)}

    def jobs() -> Iterator[Job]:
        for doc in unique(d for spec in cfg.inputs for d in iter_documents(spec) if ctx.in_shard(d.id)):
            url = doc.metadata.get(Meta.URL)
            if not doc.text.strip():
                out.drop("routing", doc.id, "empty_document", url=url)
                continue
            routed = route(doc.metadata, cfg.high_bucket_min, cfg.high_tasks, cfg.low_tasks)
            if not routed.ok:
                out.drop("routing", doc.id, routed.drop or "", routed.details, url=url)
                continue
            for task in routed.value:
                settings = cfg.tasks[task]
                segments = split_by_lines(doc.text, settings.max_input_tokens, ctx.counter)
                for si in range(cfg.max_segments or len(segments), len(segments)):  # past the cap: counted drops
                    out.drop(task, f"{doc.id}#s{si}", "over_max_segments", {"max_segments": cfg.max_segments}, url=url)
                for si, segment in enumerate(segments[: cfg.max_segments]):
                    source_id = doc.id if len(segments) == 1 else f"{doc.id}#s{si}"
                    for sample in range(settings.samples):
                        yield Job(
                            task=task,
                            source_id=source_id,
                            sample_index=sample,
                            prompt=prompts[task],
                            messages=prompts[task].messages(False, document=segment),
                            sampling=job_sampling(settings, ctx.cfg.seed, sample),
                            thinking=False,
                            payload={"document": segment, "doc": doc, "bucket": routed.details["bucket"]},
                        )

    for job, response in ctx.generator.run(jobs()):
        doc: SourceDoc = job.payload["doc"]
        url = doc.metadata.get(Meta.URL)
        parsed = answer_problem(response, cfg.tasks[job.task]) or parse_rephrase(
            job.task, response.texts[0], job.payload["document"]
        )
        if not parsed.ok:
            out.drop(job.task, f"{job.source_id}/{job.sample_index}", parsed.drop or "", parsed.details, url=url)
            continue
        if job.task == "diverse_qa":
            text = diverse_qa_text(
                job.payload["document"], parsed.value, cfg.diverse_qa_max_pairs, ctx.cfg.seed, job.source_id
            )
        else:
            text = parsed.value
        out.add(
            doc_id=f"{job.task}/{job.source_id}/{job.sample_index}",
            text=text,
            source=doc.source,
            metadata={
                **carried_metadata(doc.metadata),
                **job.document_metadata(ctx.model),
                Meta.BUCKET: job.payload["bucket"],
                Meta.PARENT_ID: doc.id,
            },
            subset=job.task,
        )
    prompts_used = {t: p.tag for t, p in prompts.items()}
    return ctx.finish(out, "rephrase", input_refs(s.path for s in cfg.inputs), before, prompts=prompts_used)
