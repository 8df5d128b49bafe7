"""Readers for the web pipeline that count every record they cannot use instead of failing or skipping silently.

datatrove's WarcReader drops non-HTML and undecodable records without a trace and lets a truncated gzip crash
the task. `WarcDocuments` reads response/conversion records with warcio and records a reason for every record it
cannot turn into a document (`non_html`, `undecodable`, `empty_payload`, `truncated_file`); the charset comes from
`decode_html` (valid UTF-8 first, then the HTTP header's charset, the page's `<meta charset>`, detection;
mojibake repaired; every repair counted). `JsonlDocuments` reads JSONL(.gz) rows (e.g.
pages with an `html` field) and counts malformed lines. Both name the file a document came from in
`metadata["source"]` (the contract's `source` column) and say whether its text is HTML (`is_html`).
"""

from __future__ import annotations

import codecs
import gzip
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.pipeline.writers.disk_base import DiskWriter

from curation.decisions import mark_drop
from nano2.contracts.documents import SOURCE, Meta

IS_HTML_KEY = "is_html"  # working metadata key: the text still needs main-text extraction

HTML_TYPES = ("text/html", "application/xhtml+xml")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_\-:.]+)""", re.I)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([a-zA-Z0-9_\-:.]+)", re.I)


# Labels that browsers (WHATWG Encoding) decode as windows-1252, a superset of Latin-1 in the 0x80-0x9F range.
_WINDOWS_1252_LABELS = {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii", "cp819"}
# Sequences that UTF-8 text shows when read as Latin-1/windows-1252 ("Ã©" for "é", "â€™" for "’"): a cheap test
# before asking ftfy to repair the text.
_MOJIBAKE_HINT = re.compile("[\u00c2\u00c3\u00c5\u00e2][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d"
                            "\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030"
                            "\u2039\u203a\u20ac\u2122]")  # fmt: skip


_UTF8_WITH_CP1252 = "nano2-utf8-cp1252"


def _cp1252_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    """Codec error handler: a byte that is not UTF-8 is read as windows-1252 (Latin-1 where that has a gap)."""
    bad = error.object[error.start : error.end]
    return "".join(bytes([b]).decode("cp1252", errors="strict") if b not in _CP1252_GAPS else chr(b) for b in bad), (
        error.end
    )


_CP1252_GAPS = {0x81, 0x8D, 0x8F, 0x90, 0x9D}
codecs.register_error(_UTF8_WITH_CP1252, _cp1252_bytes)


@dataclass(frozen=True)
class Decoded:
    """Decoded page text, the charset that decoded it and the repair made, if any: `utf8_mislabelled` (the page
    declared another charset, its bytes are UTF-8), `charset_detected` (the declared charset does not decode the
    bytes, or none was declared and the bytes are not UTF-8), `mojibake` (text encoded twice, repaired by ftfy)."""

    text: str
    charset: str
    repair: str | None = None


def declared_charsets(payload: bytes, content_type: str | None) -> list[str]:
    """The HTTP header's charset, then the page's `<meta charset>` (normalised codec names, unknown ones dropped)."""
    labels: list[str] = []
    if content_type and (m := _HEADER_CHARSET.search(content_type)):
        labels.append(m.group(1))
    if m := _META_CHARSET.search(payload[:4096]):
        labels.append(m.group(1).decode("ascii", "replace"))
    out = []
    for label in labels:
        label = label.strip().lower()
        name = "cp1252" if label in _WINDOWS_1252_LABELS else label
        try:
            name = codecs.lookup(name).name
        except LookupError:
            continue
        if name not in out:
            out.append(name)
    return out


def _decode(payload: bytes, charset: str) -> str | None:
    try:
        return payload.decode(charset)
    except UnicodeDecodeError:
        if charset == "cp1252":  # the five bytes windows-1252 leaves undefined: Latin-1 has them
            return payload.decode("latin-1")
        return None
    except LookupError:
        return None


def decode_html(payload: bytes, content_type: str | None = None) -> Decoded | None:
    """Bytes -> text, the one decoder of the web pipeline (WARC records and byte payloads alike).

    Valid UTF-8 wins over a declared legacy charset: text in a legacy charset with non-ASCII bytes is almost never
    valid UTF-8 by chance, while pages that declare ISO-8859-1 and are UTF-8 are common (read as declared they
    turn into mojibake). Otherwise the declared charsets (HTTP, then `<meta>`) in order, then detection
    (resiliparse). Mojibake left in the text (a page encoded twice) is repaired with ftfy. None when nothing
    decodes the bytes."""
    declared = declared_charsets(payload, content_type)
    text: str | None = None
    repair = None
    try:
        text, charset = payload.decode("utf-8"), "utf-8"
        if declared and declared[0] != "utf-8" and not payload.isascii():
            repair = "utf8_mislabelled"
    except UnicodeDecodeError:
        for charset in declared:
            if charset != "utf-8" and (text := _decode(payload, charset)) is not None:
                break
        if text is None:
            from resiliparse.parse.encoding import detect_encoding

            charset = detect_encoding(payload)
            text = _decode(payload, charset) if charset != "utf-8" else None
            repair = "detected"
            if text is None:  # mostly UTF-8 with stray legacy bytes (a template in one charset, text in another)
                text, charset, repair = payload.decode("utf-8", _UTF8_WITH_CP1252), "utf-8", "mixed_utf8"
    text = text.removeprefix("\ufeff")
    if _MOJIBAKE_HINT.search(text):
        import ftfy

        fixed = ftfy.fix_encoding(text)
        if fixed != text:
            text, repair = fixed, repair or "mojibake"
    return Decoded(text, charset, repair)


class _DecisionReader(BaseDiskReader):
    """A disk reader that may write a decisions row for each record it rejects."""

    def __init__(self, data_folder, decisions: DiskWriter | None = None, **kwargs):
        super().__init__(data_folder, **kwargs)
        self.decisions = decisions
        self._writer = None
        self._rank = 0

    def reject(self, doc_id: str, url: str | None, reason: str) -> None:
        self.stat_update("dropped", f"dropped_{reason}")
        if self._writer is not None:
            doc = Document(text="", id=doc_id, metadata={Meta.URL: url} if url else {})
            self._writer.write(mark_drop(doc, reason), self._rank)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._rank = rank
        if self.decisions is None:
            yield from super().run(data, rank, world_size)
            return
        with self.decisions as writer:
            self._writer = writer
            yield from super().run(data, rank, world_size)
            self._writer = None


class WarcDocuments(_DecisionReader):
    """One document per HTML response (or WET conversion) record; text is the decoded HTML (or plain text)."""

    name = "🕷 WARC (counted)"
    _requires_dependencies = ("warcio",)

    def __init__(self, data_folder, glob_pattern: str | None = None, decisions: DiskWriter | None = None, **kwargs):
        super().__init__(data_folder, decisions=decisions, glob_pattern=glob_pattern, **kwargs)

    def read_file(self, filepath: str) -> Iterator[Document]:
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        try:
            with self.data_folder.open(filepath, "rb") as raw:
                # decompress with gzip ourselves: warcio stops silently at a truncated member, gzip raises EOFError
                stream = gzip.GzipFile(fileobj=raw) if filepath.endswith(".gz") else raw
                for index, record in enumerate(ArchiveIterator(stream)):
                    doc = self._record_to_document(record, filepath, index)
                    if doc is not None:
                        yield doc
        except (OSError, EOFError, zlib.error, ArchiveLoadFailed, ValueError) as exc:
            # a truncated or corrupt file: keep what was read, count the rest as one reasoned drop
            self.reject(f"{filepath}#rest", None, "truncated_file")
            self.stat_update("truncated_files")
            from loguru import logger

            logger.warning(f"{filepath}: stopped reading ({type(exc).__name__}: {exc})")

    def _record_to_document(self, record, filepath: str, index: int) -> Document | None:
        if record.rec_type not in ("response", "conversion", "resource"):
            return None
        headers = record.rec_headers
        doc_id = headers.get_header("WARC-Record-ID") or f"{filepath}#{index}"
        url = headers.get_header("WARC-Target-URI")
        self.stat_update("records")
        content_type = None
        if record.http_headers is not None:
            content_type = record.http_headers.get_header("Content-Type")
        content_type = content_type or headers.get_header("Content-Type")
        payload_type = headers.get_header("WARC-Identified-Payload-Type") or (content_type or "").split(";")[0]
        payload_type = payload_type.strip().lower()
        is_text = record.rec_type == "conversion" and payload_type in ("", "text/plain")
        if not is_text and payload_type and payload_type not in HTML_TYPES:
            self.reject(doc_id, url, "non_html")
            return None
        payload = record.content_stream().read()
        if not payload.strip():
            self.reject(doc_id, url, "empty_payload")
            return None
        if not payload_type and not payload.lstrip()[:512].lower().startswith((b"<!doctype", b"<html", b"<head", b"<")):
            self.reject(doc_id, url, "non_html")
            return None
        decoded = decode_html(payload, content_type)
        if decoded is None:
            self.reject(doc_id, url, "undecodable")
            return None
        if decoded.repair:
            self.stat_update(f"charset_{decoded.repair}")
        text = decoded.text
        meta = {Meta.URL: url, Meta.DATE: headers.get_header("WARC-Date"), SOURCE: filepath, IS_HTML_KEY: not is_text}
        return self.get_document_from_dict({"text": text, "id": doc_id, **meta}, filepath, index)


class JsonlDocuments(_DecisionReader):
    """JSONL(.gz) rows to documents; `text_key` may name an HTML field (then `html: true` metadata is set)."""

    name = "🐿 JSONL (counted)"

    def __init__(
        self,
        data_folder,
        glob_pattern: str | None = None,
        text_key: str = "text",
        id_key: str = "id",
        url_key: str = "url",
        is_html: bool = False,
        decisions: DiskWriter | None = None,
        **kwargs,
    ):
        super().__init__(data_folder, decisions=decisions, glob_pattern=glob_pattern, **kwargs)
        self.field, self.id_field, self.url_key, self.is_html = text_key, id_key, url_key, is_html

    def read_file(self, filepath: str) -> Iterator[Document]:
        try:
            with self.data_folder.open(filepath, "rt", compression="infer", encoding="utf-8", errors="replace") as f:
                for index, line in enumerate(f):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        self.reject(f"{filepath}#{index}", None, "malformed_json")
                        continue
                    if not isinstance(row, dict):
                        self.reject(f"{filepath}#{index}", None, "malformed_json")
                        continue
                    text = row.get(self.field)
                    doc_id = str(row.get(self.id_field) or f"{filepath}#{index}")
                    url = row.get(self.url_key)
                    if not isinstance(text, str) or not text.strip():
                        self.reject(doc_id, url, "empty_text")
                        continue
                    meta = {Meta.URL: url, SOURCE: filepath, IS_HTML_KEY: self.is_html}
                    doc = self.get_document_from_dict({"text": text, "id": doc_id, **meta}, filepath, index)
                    if doc is not None:
                        yield doc
        except (OSError, EOFError, zlib.error) as exc:
            self.reject(f"{filepath}#rest", None, "truncated_file")
            from loguru import logger

            logger.warning(f"{filepath}: stopped reading ({type(exc).__name__}: {exc})")
