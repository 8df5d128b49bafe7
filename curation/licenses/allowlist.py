"""The permissive allow-list: ScanCode keys we may train on, kept as a versioned data file in the repository.

`data/permissive_licenses.json` is generated, never hand-edited: every license of the installed ScanCode license
database whose category is Permissive or Public Domain, minus the reviewed denials and plus the reviewed
additions of `data/allowlist_overrides.yaml` (each with its reason). The file records the ScanCode version and a
hash of the database's (key, category) table, so a ScanCode upgrade that moves a license shows up as a diff.

    python -m curation.licenses.allowlist            # regenerate the data file
    python -m curation.licenses.allowlist --check    # exit 1 if the committed file differs from a regeneration
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from nano2.config import load_yaml_model

DATA_DIR = Path(__file__).resolve().parent / "data"
ALLOWLIST_PATH = DATA_DIR / "permissive_licenses.json"
OVERRIDES_PATH = DATA_DIR / "allowlist_overrides.yaml"
ALLOWED_CATEGORIES = ("Permissive", "Public Domain")
UNSTATED_CATEGORY = "Unstated License"
FORMAT_VERSION = 1


class Overrides(BaseModel):
    """Reviewed changes to the category-derived list; every entry maps a ScanCode key to why."""

    model_config = ConfigDict(extra="forbid")
    deny: dict[str, str] = Field(default_factory=dict, description="permissive by category, but not kept")
    allow: dict[str, str] = Field(default_factory=dict, description="kept although its category is not permissive")
    neutral: dict[str, str] = Field(
        default_factory=dict, description="grant nothing and restrict nothing (e.g. a bare warranty disclaimer)"
    )


@dataclass(frozen=True)
class LicenseRecord:
    """What the generator needs to know of one license of the ScanCode database."""

    key: str
    category: str
    spdx: str | None
    is_exception: bool


def installed_license_records() -> list[LicenseRecord]:
    """Every license of the installed ScanCode database (loads ScanCode's cached license data)."""
    from licensedcode.cache import get_licenses_db

    return [
        LicenseRecord(
            key=lic.key, category=lic.category or "", spdx=lic.spdx_license_key, is_exception=lic.is_exception
        )
        for lic in get_licenses_db().values()
    ]


def scancode_version() -> str:
    import scancode_config

    return str(scancode_config.__version__)


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_allowlist(records: Iterable[LicenseRecord], overrides: Overrides, version: str) -> dict:
    """The allow-list document; a pure function of the database records, the overrides and the ScanCode version."""
    by_key = {r.key: r for r in records}
    unknown = sorted(k for k in [*overrides.deny, *overrides.allow, *overrides.neutral] if k not in by_key)
    if unknown:
        raise ValueError(f"{OVERRIDES_PATH.name}: keys not in the ScanCode database: {', '.join(unknown)}")
    allowed = []
    for key in sorted(by_key):
        record = by_key[key]
        if key in overrides.deny or key in overrides.neutral:  # neutral keys are taken out before any verdict
            continue
        if record.category in ALLOWED_CATEGORIES:
            source = "category"
        elif key in overrides.allow:
            source = "override"
        else:
            continue
        allowed.append(
            {"key": key, "spdx": record.spdx, "category": record.category, "exception": record.is_exception,
             "source": source}
        )  # fmt: skip
    db_table = "\n".join(f"{k}\t{r.category}\t{r.spdx}\t{r.is_exception}" for k, r in sorted(by_key.items()))
    overrides_json = json.dumps(overrides.model_dump(), sort_keys=True)
    return {
        "format_version": FORMAT_VERSION,
        "generated_by": "python -m curation.licenses.allowlist",
        "scancode_toolkit_version": version,
        "license_db_sha256": _sha256_text(db_table),
        "overrides_sha256": _sha256_text(overrides_json),
        "categories": list(ALLOWED_CATEGORIES),
        "counts": {"database": len(by_key), "allowed": len(allowed), "denied_by_override": len(overrides.deny)},
        "denied": dict(sorted(overrides.deny.items())),
        "neutral": sorted(overrides.neutral),
        "unstated": sorted(k for k, r in by_key.items() if r.category == UNSTATED_CATEGORY),
        "allowed": allowed,
    }


def render_allowlist(document: dict) -> str:
    """Deterministic JSON with one allowed license per line, so reviews read as one-line diffs."""
    head = {k: v for k, v in document.items() if k != "allowed"}
    lines = json.dumps(head, indent=2, sort_keys=False, ensure_ascii=False).rstrip("}").rstrip().rstrip(",")
    rows = ",\n".join("    " + json.dumps(entry, sort_keys=True, ensure_ascii=False) for entry in document["allowed"])
    return f'{lines},\n  "allowed": [\n{rows}\n  ]\n}}\n'


def load_overrides(path: Path = OVERRIDES_PATH) -> Overrides:
    return load_yaml_model(path, Overrides)


def generate(output: Path = ALLOWLIST_PATH, overrides_path: Path = OVERRIDES_PATH) -> str:
    """Regenerate the data file from the installed ScanCode database; returns the text written."""
    text = render_allowlist(build_allowlist(installed_license_records(), load_overrides(overrides_path),
                                            scancode_version()))  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return text


@dataclass(frozen=True)
class AllowList:
    """The loaded allow-list: what the license policy consults for every file."""

    allowed: frozenset[str]
    unstated: frozenset[str]
    neutral: frozenset[str]
    scancode_version: str
    sha256: str


@functools.lru_cache(maxsize=4)
def load_allowlist(path: str | Path = ALLOWLIST_PATH) -> AllowList:
    """Read the generated data file (cached per path)."""
    from nano2.errors import Nano2Error

    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
        document = json.loads(raw)
        return AllowList(
            allowed=frozenset(entry["key"] for entry in document["allowed"]),
            unstated=frozenset(document["unstated"]),
            neutral=frozenset(document["neutral"]),
            scancode_version=document["scancode_toolkit_version"],
            sha256=_sha256_text(raw),
        )
    except FileNotFoundError:
        raise Nano2Error(f"{path}: allow-list not found (generate it: python -m curation.licenses.allowlist)") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise Nano2Error(f"{path}: not an allow-list data file ({type(exc).__name__}: {exc})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ALLOWLIST_PATH)
    parser.add_argument("--overrides", type=Path, default=OVERRIDES_PATH)
    parser.add_argument("--check", action="store_true", help="compare with the file at --output; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        fresh = render_allowlist(
            build_allowlist(installed_license_records(), load_overrides(args.overrides), scancode_version())
        )
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if fresh != current:
            print(f"{args.output}: differs from a regeneration with ScanCode {scancode_version()}", file=sys.stderr)
            return 1
        print(f"{args.output}: up to date")
        return 0
    text = generate(args.output, args.overrides)
    print(f"wrote {args.output}: {json.loads(text)['counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
