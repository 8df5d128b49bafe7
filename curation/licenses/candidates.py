"""Which files of a repository say something about its license, and what package metadata declares.

Pure functions (no ScanCode): file-name rules for license files (LICENSE*, LICENCE*, COPYING*, UNLICENSE, *.LICENSE,
files in a REUSE `LICENSES/` folder), notices (NOTICE*, COPYRIGHT*), READMEs (their license section only), and
the license fields of package metadata (pyproject.toml, setup.cfg, package.json, Cargo.toml, composer.json,
PKG-INFO / wheel METADATA). Source files named like licenses (`license.py`) are code, not license files.
"""

from __future__ import annotations

import configparser
import email.parser
import json
import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath


class CandidateKind(StrEnum):
    """How a file informs the license of its directory; what a failed or empty detection means depends on it."""

    LICENSE = "license_file"  # must name a license: nothing found there is an unknown license (fail closed)
    NOTICE = "notice"  # may name one (NOTICE, COPYRIGHT): nothing found is no evidence
    README = "readme"  # its license section may name one
    METADATA = "package_metadata"  # declared license fields


LICENSE_PREFIXES = ("license", "licence", "copying", "unlicense")
LICENSE_SUFFIXES = (".license", "-license", "_license", ".licence", "-licence", "_licence")
NOTICE_PREFIXES = ("notice", "copyright", "thirdpartynotices", "third_party_notices", "third-party-notices", "patents")
TEXT_SUFFIXES = frozenset({"", ".txt", ".md", ".markdown", ".rst", ".text", ".html", ".htm", ".adoc", ".org", ".pod"})
METADATA_NAMES = frozenset({"pyproject.toml", "setup.cfg", "package.json", "cargo.toml", "composer.json", "pkg-info"})
# Extensions of source code: a `license.py` or `LicenseUtils.java` is code about licenses, not a license file.
CODE_SUFFIXES = frozenset([
    ".py", ".pyi", ".pyx", ".pxd", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".java", ".js", ".mjs", ".cjs",
    ".ts", ".tsx", ".jsx", ".go", ".rs", ".rb", ".php", ".cs", ".kt", ".kts", ".scala", ".swift", ".m", ".mm", ".sh",
    ".bash", ".pl", ".pm", ".lua", ".r", ".jl", ".hs", ".ml", ".ex", ".exs", ".erl", ".clj", ".dart", ".sql", ".css",
    ".scss", ".json", ".yaml", ".yml", ".toml", ".xml", ".proto", ".cmake", ".vue", ".svelte", ".groovy", ".gradle",
    ".ini", ".cfg", ".tmpl", ".j2", ".jinja", ".in", ".po", ".pot",
])  # fmt: skip


def candidate_kind(path: str) -> CandidateKind | None:
    """The license role of a repository path, or None for an ordinary file."""
    pure = PurePosixPath(path)
    name = pure.name.lower()
    suffix = pure.suffix.lower() if "." in name.lstrip(".") else ""
    if name in METADATA_NAMES:
        return CandidateKind.METADATA
    if suffix in CODE_SUFFIXES:
        return None
    if name.startswith(LICENSE_PREFIXES) or name.endswith(LICENSE_SUFFIXES):
        return CandidateKind.LICENSE
    if len(pure.parts) > 1 and pure.parent.name.lower() in ("licenses", "licences") and suffix in TEXT_SUFFIXES:
        return CandidateKind.LICENSE  # REUSE layout: LICENSES/MIT.txt
    if name.startswith(NOTICE_PREFIXES):
        return CandidateKind.NOTICE
    if name.startswith("readme") and suffix in TEXT_SUFFIXES:
        return CandidateKind.README
    return None


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+])\1{2,}\s*$")
_LICENSE_WORDS = frozenset({"license", "licence", "licenses", "licences", "licensing", "copyright", "copying"})
_HEADING_WORDS = _LICENSE_WORDS | {"the", "and", "information", "notice", "notices", "legal", "terms", "credits",
                                   "authors", "attribution", "warranty"}  # fmt: skip


def _is_license_heading(title: str) -> bool:
    """`License`, `Copyright & License`, `📝 Licensing` yes; `License expressions`, `Bundled licenses` no."""
    words = re.sub(r"[^a-z ]+", " ", title.lower()).split()
    return bool(words) and len(words) <= 5 and set(words) <= _HEADING_WORDS and bool(set(words) & _LICENSE_WORDS)


def readme_license_section(text: str, max_chars: int = 8000) -> str | None:
    """The body of the first heading about the license in a Markdown or reStructuredText README, if any."""
    lines = text.splitlines()
    headings: list[tuple[int, int, str]] = []  # (line index, level, title)
    rst_levels: dict[str, int] = {}
    for i, line in enumerate(lines):
        if m := _MD_HEADING.match(line):
            headings.append((i, len(m.group(1)), m.group(2)))
        elif i > 0 and lines[i - 1].strip() and (u := _RST_UNDERLINE.match(line)):
            level = rst_levels.setdefault(u.group(1), len(rst_levels) + 1)
            headings.append((i - 1, level, lines[i - 1].strip()))
    for n, (start, level, title) in enumerate(headings):
        if not _is_license_heading(title):
            continue
        end = next((s for s, lvl, _ in headings[n + 1 :] if lvl <= level and s > start + 1), len(lines))
        body_start = start + 2 if start + 1 < len(lines) and _RST_UNDERLINE.match(lines[start + 1]) else start + 1
        body = "\n".join(lines[body_start:end]).strip()
        return body[:max_chars] or None
    return None


@dataclass(frozen=True)
class DeclaredLicense:
    """One license statement of a package metadata file (an SPDX expression, a name, a classifier or a text).

    `expression` is set when the value's meaning is fixed by the format rather than by its words (npm's
    `UNLICENSED` grants nothing, whatever a text matcher would make of it).
    """

    field: str
    value: str
    expression: str | None = None


class MetadataError(ValueError):
    """A package metadata file that cannot be parsed (its license is then unknown, not absent)."""


_NOT_DECLARED = frozenset({"", "unknown", "none", "n/a", "other", "-", "null"})


def _declared(field: str, value: object) -> list[DeclaredLicense]:
    if not isinstance(value, str) or value.strip().lower() in _NOT_DECLARED:
        return []
    return [DeclaredLicense(field, value.strip())]


def _classifiers(field: str, values: object) -> list[DeclaredLicense]:
    if isinstance(values, str):
        values = values.splitlines()
    if not isinstance(values, list):
        return []
    return [
        DeclaredLicense(field, v.strip())
        for v in values
        if isinstance(v, str) and v.strip().startswith("License ::") and v.strip() != "License :: OSI Approved"
    ]


def _npm_license(field: str, value: object) -> list[DeclaredLicense]:
    if isinstance(value, dict):
        value = value.get("type")
    if isinstance(value, list):
        return [d for v in value for d in _npm_license(field, v)]
    if not isinstance(value, str):
        return []
    if value.strip().upper() == "UNLICENSED":  # npm's word for "no permission granted", not the Unlicense
        return [DeclaredLicense(field, "UNLICENSED", expression="proprietary-license")]
    if value.strip().upper().startswith("SEE LICENSE IN"):  # a pointer to a file, read as a license file
        return [DeclaredLicense(field, value.strip(), expression="unknown-license-reference")]
    return _declared(field, value)


_SEE_LICENSE_IN = re.compile(r"^\s*SEE\s+LICEN[CS]E\s+IN\s+(\S+)\s*$", re.IGNORECASE)


def license_pointer(path: str, text: str) -> str | None:
    """The repository path of the file a `package.json` names with `"license": "SEE LICENSE IN <file>"`."""
    if PurePosixPath(path).name.lower() != "package.json":
        return None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeError):
        return None
    value = data.get("license") if isinstance(data, dict) else None
    match = _SEE_LICENSE_IN.match(value) if isinstance(value, str) else None
    if not match:
        return None
    target = PurePosixPath(path).parent / match.group(1).removeprefix("./")
    return target.as_posix().removeprefix("./")


def declared_licenses(path: str, text: str) -> list[DeclaredLicense]:
    """License statements of a package metadata file; raises MetadataError when it cannot be parsed."""
    name = PurePosixPath(path).name.lower()
    try:
        if name == "pyproject.toml":
            data = tomllib.loads(text)
            project = data.get("project", {}) if isinstance(data.get("project"), dict) else {}
            poetry = data.get("tool", {}).get("poetry", {}) if isinstance(data.get("tool"), dict) else {}
            out = []
            lic = project.get("license")
            if isinstance(lic, str):
                out += _declared("project.license", lic)
            elif isinstance(lic, dict):
                out += _declared("project.license.text", lic.get("text"))
            out += _classifiers("project.classifiers", project.get("classifiers"))
            if isinstance(poetry, dict):
                out += _declared("tool.poetry.license", poetry.get("license"))
                out += _classifiers("tool.poetry.classifiers", poetry.get("classifiers"))
            return out
        if name == "setup.cfg":
            parser = configparser.ConfigParser(interpolation=None, strict=False)
            parser.read_string(text)
            if not parser.has_section("metadata"):
                return []
            meta = parser["metadata"]
            return [
                *_declared("metadata.license_expression", meta.get("license_expression")),
                *_declared("metadata.license", meta.get("license")),
                *_classifiers("metadata.classifiers", meta.get("classifiers", "")),
            ]
        if name in ("package.json", "composer.json"):
            data = json.loads(text)
            if not isinstance(data, dict):
                raise MetadataError("expected a JSON object")
            return [*_npm_license("license", data.get("license")), *_npm_license("licenses", data.get("licenses"))]
        if name == "cargo.toml":
            package = tomllib.loads(text).get("package", {})
            value = package.get("license") if isinstance(package, dict) else None
            if isinstance(value, str) and "/" in value:  # old Cargo syntax: MIT/Apache-2.0 means either
                value = " OR ".join(part.strip() for part in value.split("/"))
            return _declared("package.license", value)
        if name == "pkg-info":
            message = email.parser.Parser().parsestr(text, headersonly=True)
            expression = _declared("License-Expression", message.get("License-Expression"))
            if expression:  # PEP 639: when present, it is the license; the rest is legacy
                return expression
            return [
                *_declared("License", message.get("License")),
                *_classifiers("Classifier", message.get_all("Classifier") or []),
            ]
    except (tomllib.TOMLDecodeError, configparser.Error, json.JSONDecodeError, UnicodeError) as exc:
        raise MetadataError(f"{type(exc).__name__}: {exc}"[:300]) from None
    return []
