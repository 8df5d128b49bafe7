"""Nemotron-CC rephrasing: route crawl documents by quality bucket, parse and validate what the model wrote.

Routing (paper-facts §4): curation writes each English document's ensemble bucket (0-19, `metadata.bucket`) and
level. Buckets at or above `high_bucket_min` go to the four high-quality tasks (`diverse_qa`, `distill`,
`extract_knowledge`, `knowledge_list`), the rest to `wiki_paraphrase`. NeMo Curator's tutorial uses bucket > 11
(`high_bucket_min: 12`); the newer Nemotron-CC recipe generates only from buckets 18-19. A document without a
bucket (unscored, or not English) is not routed and is counted as a drop.

Pretraining text: DiverseQA rows are the document followed by a subset of the generated pairs (NeMo Curator's
post-processing: at least one, at most `max_pairs`, chosen by hash here instead of a global RNG); the other tasks'
rows are the rewritten text itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from synthetic.tasks.common import (
    Parsed,
    QAPair,
    check_prose,
    drop,
    format_qa_pairs,
    keep,
    parse_qa_pairs,
    pick_int,
    unit_hash,
)

HIGH_TASKS = ("diverse_qa", "distill", "extract_knowledge", "knowledge_list")
LOW_TASKS = ("wiki_paraphrase",)
REPHRASE_TASKS = (*HIGH_TASKS, *LOW_TASKS)
# Max input / output tokens per request (paper-facts §4, from the Nemotron-CC recipe); wiki_paraphrase has no
# published limit, so it gets distill's.
TOKEN_LIMITS = {
    "diverse_qa": (1000, 600),
    "distill": (2000, 1600),
    "extract_knowledge": (1400, 1400),
    "knowledge_list": (1000, 600),
    "wiki_paraphrase": (2000, 1600),
}
BUCKET_KEY = "bucket"  # curation.quality.thresholds.BUCKET_KEY


def document_bucket(metadata: Mapping[str, Any]) -> int | None:
    """The ensemble quality bucket curation wrote, or None (unscored documents have none)."""
    value = metadata.get(BUCKET_KEY)
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
        return drop("no_quality_bucket", level=metadata.get("level"))
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
