"""Cheap per-file filters that run after the license step has seen every file: input issues and language."""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from curation.code.languages import language_of
from curation.code.reader import INPUT_DETAIL_KEY, INPUT_ISSUE_KEY
from curation.decisions import SCORE_KEY
from nano2.contracts.documents import Meta


class InputIssueFilter(BaseFilter):
    """Drops what the reader marked (binary, too_large, vendored_path, ...) with that mark as the reason."""

    name = "🚧 input issues"

    def __init__(self, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        issue = doc.metadata.get(INPUT_ISSUE_KEY)
        if not issue:
            return True
        doc.metadata[SCORE_KEY] = {"size": doc.metadata.get(Meta.SIZE), "detail": doc.metadata.get(INPUT_DETAIL_KEY)}
        return False, issue


class LanguageFilter(BaseFilter):
    """Sets `metadata["code_language"]` from the extension; drops unknown extensions and languages not asked for."""

    name = "🗂 language"

    def __init__(self, languages: list[str] | None = None, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.languages = frozenset(languages) if languages else None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language = language_of(doc.metadata.get(Meta.PATH, ""))
        doc.metadata[Meta.CODE_LANGUAGE] = language
        if language is None:
            return False, "unsupported_extension"
        if self.languages is not None and language not in self.languages:
            return False, "language_not_selected"
        return True
