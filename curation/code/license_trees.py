"""The license stage on real package trees, scored per package against the license each package declares.

Trees nobody labelled for us: the PyPI distributions installed in this environment (label: their METADATA
License-Expression, License and license classifiers) and npm packages installed with `npm install
--ignore-scripts` into a temporary folder (label: `package.json` `license`). Each package runs through the license
stage (`curation.code.license_stage`) as one repository; its code files (not license or metadata files) are kept
or dropped. Per package: a wrong keep is a package declaring a non-permissive license with a code file kept under
the package's own declarations (its root license files or metadata), a false drop a package declaring a permissive
license with none of its code files kept. A file kept under a bundled component's own declaration (a license
file in its subtree, or its own `SPDX-License-Identifier` line: POLICY.md rule 3) is not governed by the package's
declared license, which covers the whole distribution (a wheel's compiled-in libraries included); such files are
counted apart (`bundled_keeps`) with the declarations that governed them, for a reader to check.

    python -m curation.code.license_trees [--distributions six idna ...] [--npm left-pad @babel/core ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from curation.licenses.allowlist import AllowList, load_allowlist
from curation.licenses.candidates import candidate_kind
from curation.licenses.detector import DetectorSettings, LicenseDetector, load_index
from curation.licenses.evaluate import keeps_license


@dataclass
class PackageScore:
    """Per package: the declared license (the label) against what the license stage keeps of its code files."""

    packages: int = 0
    labelled: int = 0
    wrong_keeps: int = 0  # a package declaring a non-permissive license with a file kept under its declarations
    bundled_keeps: int = 0  # files of such packages kept under a bundled component's own declaration
    false_drops: int = 0  # a package declaring a permissive license with none of its code files kept
    # code files dropped in packages declaring a permissive license (a package keeping 7 of 11,955 files is not a
    # false drop above, but its 11,948 dropped files show here)
    permissive_files: int = 0
    permissive_files_dropped: int = 0
    files: int = 0
    files_kept: int = 0
    seconds: float = 0.0
    rows: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "packages": self.packages, "labelled": self.labelled, "wrong_keeps": self.wrong_keeps,
            "bundled_keeps": self.bundled_keeps,
            "false_drops": self.false_drops,
            "permissive_files_dropped": f"{self.permissive_files_dropped}/{self.permissive_files}",
            "files": self.files, "files_kept": self.files_kept,
            "files_per_second": round(self.files / self.seconds, 1) if self.seconds else None,
        }  # fmt: skip


def declared_label(manifest_path: str, text: str, detector: LicenseDetector) -> str | None:
    """The license a package declares in its metadata (METADATA/PKG-INFO or package.json), as an expression."""
    from curation.licenses.detector import metadata_detection

    detection = metadata_detection(manifest_path, text, detector)
    return detection.expression if detection.status == "license" else None


def score_package(name: str, files: list, label: str | None, allowlist: AllowList, settings: DetectorSettings) -> dict:
    """Run the license stage on one package's files; keep counts of its code files (not license/metadata files)."""
    from datatrove.data import Document

    from curation.code.languages import language_of
    from curation.code.license_stage import FileLicenseFilter, RepositoryLicenses
    from curation.code.reader import InputLimits, file_document
    from curation.decisions import REASON_KEY
    from nano2.contracts.documents import Meta

    limits = InputLimits(drop_vendored=False)
    docs: list[Document] = [file_document(name, f, limits) for f in files]
    data = RepositoryLicenses(settings).run(iter(docs))
    code = [d for d in data if not d.metadata.get("input_issue") and language_of(d.metadata[Meta.PATH])
            and candidate_kind(d.metadata[Meta.PATH]) is None]  # fmt: skip
    kept = list(FileLicenseFilter(settings).run(iter(code)))
    reasons: dict[str, int] = {}
    for doc in code:
        if reason := doc.metadata.get(REASON_KEY):
            reasons[reason] = reasons.get(reason, 0) + 1
    bundled = [
        d
        for d in kept
        if governed_by_a_bundled_component(d.metadata[Meta.PATH], d.metadata.get(Meta.LICENSE_SOURCE_PATH))
    ]
    return {"package": name, "label": label, "label_keeps": keeps_license(label, allowlist) if label else None,
            "code_files": len(code), "kept": len(kept), "kept_bundled": len(bundled),
            "kept_licenses": sorted({str(d.metadata.get(Meta.LICENSE_EXPRESSION)) for d in kept}),
            "bundled_sources": sorted({str(d.metadata.get(Meta.LICENSE_SOURCE_PATH)) for d in bundled}),
            "drop_reasons": reasons}  # fmt: skip


def governed_by_a_bundled_component(path: str, source_paths: str | None) -> bool:
    """Was a kept file governed by no declaration at the package root, only by a license file in its own subtree
    or its own SPDX line (POLICY.md rule 3)? `source_paths` is the comma-joined evidence its resolution used."""
    sources = split_source_paths(source_paths)
    return bool(sources) and not any("/" not in source and source != path for source in sources)


def split_source_paths(source_paths: str | None) -> list[str]:
    """The paths of a comma-joined `Meta.LICENSE_SOURCE_PATH` (as `FileLicenseFilter` writes it)."""
    return [p.strip() for p in (source_paths or "").split(",") if p.strip()]


def site_packages_trees(names: list[str] | None) -> list[tuple[str, list, str, str]]:
    """(name, files, metadata path, metadata text) of installed distributions (see curation.code.sources)."""
    from curation.code.sources import SitePackagesSource, distribution_files

    source = SitePackagesSource(kind="site-packages", distributions=names)
    out = []
    for unit in source.units():
        files = list(distribution_files(source.installed()[unit], source.site_dir()))
        meta = next((f for f in files if f.path == "PKG-INFO"), None)
        out.append((unit, files, "PKG-INFO", meta.read().decode("utf-8", "replace") if meta else ""))
    return out


def npm_trees(node_modules: Path) -> list[tuple[str, list, str, str]]:
    """(name, files, "package.json", its text) of every package under a node_modules folder, `@scope/name`
    packages separate (curation.code.sources), nested node_modules left to their own packages."""
    from curation.code.sources import RepositoriesSource

    source = RepositoriesSource(kind="repositories", root=str(node_modules))
    out = []
    for unit in source.units():
        for name, files in source.repositories(unit, 1_000_000):
            files = [f for f in files if "node_modules/" not in f.path]
            manifest = next((f for f in files if f.path == "package.json"), None)
            out.append((name, files, "package.json", manifest.read().decode("utf-8", "replace") if manifest else ""))
    return out


def npm_install(packages: list[str], folder: Path) -> Path:
    """`npm install --ignore-scripts` of `packages` into `folder` (no install script runs); its node_modules."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text('{"name": "license-eval", "private": true}', encoding="utf-8")
    command = ["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(folder), *packages]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return folder / "node_modules"


def evaluate_packages(trees: list[tuple[str, list, str, str]], settings: DetectorSettings,
                      allowlist: AllowList) -> dict:  # fmt: skip
    """Score the license stage per package against each package's declared license."""
    detector = LicenseDetector(settings)
    score = PackageScore()
    for name, files, manifest_path, manifest_text in trees:
        started = time.process_time()
        label = declared_label(manifest_path, manifest_text, detector) if manifest_text else None
        row = score_package(name, files, label, allowlist, settings)
        score.seconds += time.process_time() - started
        score.packages += 1
        score.files += row["code_files"]
        score.files_kept += row["kept"]
        if label is not None and row["code_files"]:
            score.labelled += 1
            row["wrong_keep"] = not row["label_keeps"] and row["kept"] > row["kept_bundled"]
            score.bundled_keeps += 0 if row["label_keeps"] else row["kept_bundled"]
            row["false_drop"] = bool(row["label_keeps"]) and row["kept"] == 0
            score.wrong_keeps += row["wrong_keep"]
            score.false_drops += row["false_drop"]
            if row["label_keeps"]:
                score.permissive_files += row["code_files"]
                score.permissive_files_dropped += row["code_files"] - row["kept"]
        score.rows.append(row)
    return {**score.as_dict(), "rows": score.rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distributions", nargs="*", default=None, help="installed PyPI distributions")
    parser.add_argument("--npm", nargs="*", default=[], help="npm packages, installed with --ignore-scripts")
    parser.add_argument("--node-modules", type=Path, default=None, help="an existing node_modules to read")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    report: dict = {}
    settings, allowlist = DetectorSettings(), load_allowlist()
    load_index()
    report["pypi"] = evaluate_packages(site_packages_trees(args.distributions), settings, allowlist)
    node_modules = args.node_modules
    with tempfile.TemporaryDirectory(prefix="npm-license-eval-") as folder:
        if args.npm and node_modules is None:
            node_modules = npm_install(args.npm, Path(folder))
        if node_modules is not None:
            report["npm"] = evaluate_packages(npm_trees(node_modules), settings, allowlist)
    for tree in ("pypi", "npm"):
        if tree in report:
            print(f"{tree}: {json.dumps({k: v for k, v in report[tree].items() if k != 'rows'})}")
            for row in report[tree]["rows"]:
                if row.get("wrong_keep") or row.get("false_drop"):
                    kind = "WRONG KEEP" if row["wrong_keep"] else "false drop"
                    print(f"  {kind}: {row['package']} declared={row['label']} kept={row['kept']}/"
                          f"{row['code_files']} {row['kept_licenses']}")  # fmt: skip
                elif row.get("label_keeps") is False and row["kept_bundled"]:
                    governing = sorted(
                        {path for joined in row["bundled_sources"] for path in split_source_paths(joined)}
                    )
                    more = f" and {len(governing) - 4} more" if len(governing) > 4 else ""
                    print(
                        f"  kept under bundled components: {row['package']} declared={row['label']} "
                        f"kept={row['kept_bundled']}/{row['code_files']}, governed by {', '.join(governing[:4])}{more}"
                    )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
