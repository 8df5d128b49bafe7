"""Where repositories come from: directories and archives under a root, a table of files, or site-packages.

Every source splits into *units* (a repository directory or archive, a table file, an installed distribution)
that tasks share out by rank, and each unit yields whole repositories as (name, files). A repository is always
read by one task, in one piece, because the license of a file depends on the other files of its repository.

Site-packages: each installed distribution is a repository. Its files come from its RECORD; the license files a
wheel keeps in `*.dist-info/licenses/` go back to the paths they had in the project (PEP 639 keeps those paths,
so `numpy/random/LICENSE.md` governs `numpy/random/`), older `*.dist-info/LICENSE*` files go to the root, and
`METADATA` becomes the root `PKG-INFO` (the same format as in an sdist). Other install records are not source.
"""

from __future__ import annotations

import errno
import functools
import glob
import hashlib
import importlib.metadata as importlib_metadata
import os
import re
import sysconfig
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from curation.licenses.candidates import CandidateKind, candidate_kind
from nano2.errors import Nano2Error

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")


@dataclass(frozen=True)
class SourceFile:
    """One file of a repository; `read` returns its bytes and may raise OSError (an unreadable file).

    `location` is the file's path on disk when it has one (not for archive members or table rows).
    """

    path: str
    size: int
    read: Callable[[], bytes]
    is_symlink: bool = False
    location: str | None = None
    issue: str | None = None  # why it cannot be read as a file of the repository (symlink_dangling, ...)


Repository = tuple[str, Iterator[SourceFile]]


class RepositoriesSource(BaseModel):
    """Each directory or archive (.tar.gz, .tgz, .tar, .zip, ...) directly under `root` is one repository."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["repositories"]
    root: str

    def units(self) -> list[str]:
        """Repository directories and archives; a folder that only groups packages (an npm `@scope`, a folder
        without a manifest or license of its own whose subfolders have manifests) gives one unit per package."""
        root = Path(self.root)
        if not root.is_dir():
            raise Nano2Error(f"source.root: {root} is not a directory")
        units = []
        for entry in sorted(root.iterdir(), key=lambda p: p.name):
            if entry.name.startswith(".") or entry.is_symlink():
                continue  # a symlinked repository would be read twice or from outside the root
            if entry.is_dir():
                units += [f"{entry.name}/{p}" for p in package_subfolders(entry)] or [entry.name]
            elif _is_archive(entry.name):
                units.append(entry.name)
        return units

    def repositories(self, unit: str, max_bytes: int) -> Iterator[Repository]:
        path = Path(self.root) / unit
        if path.is_dir():
            yield unit, walk_directory(path)
        else:
            yield _archive_name(unit), _walk_archive(path, max_bytes)


class TableSource(BaseModel):
    """Parquet or JSONL tables of (repo, path, content) rows, as The Stack ships them.

    All rows of a repository must be in one file (tasks split the files); rows of a repository may be in any order.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["table"]
    paths: list[str] = Field(min_length=1, description="files or glob patterns")
    repo_column: str = "repo_name"
    path_column: str = "path"
    content_column: str = "content"

    def units(self) -> list[str]:
        files: set[str] = set()
        for pattern in self.paths:
            matched = glob.glob(pattern, recursive=True)
            if not matched:
                raise Nano2Error(f"source.paths: nothing matches {pattern!r}")
            files.update(m for m in matched if os.path.isfile(m))
        return sorted(files)

    def repositories(self, unit: str, max_bytes: int) -> Iterator[Repository]:
        rows = self._read_rows(unit)
        by_repo: dict[str, list[tuple[str, object]]] = {}
        for repo, path, content in rows:
            by_repo.setdefault(str(repo), []).append((str(path), content))
        for repo in sorted(by_repo):
            yield repo, _table_files(sorted(by_repo[repo], key=lambda item: item[0]))

    def _read_rows(self, unit: str) -> list[tuple[object, object, object]]:
        columns = [self.repo_column, self.path_column, self.content_column]
        if unit.endswith(".parquet"):
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(unit, columns=columns)
            except (KeyError, ValueError) as exc:
                raise Nano2Error(f"{unit}: cannot read columns {columns}: {exc}") from None
            data = table.to_pydict()
            return list(zip(*(data[c] for c in columns), strict=True))
        import orjson
        from datatrove.io import get_datafolder

        rows = []
        folder = get_datafolder(os.path.dirname(unit) or ".")
        with folder.open(os.path.basename(unit), "rt", compression="infer") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise Nano2Error(f"{unit}: line {number}: malformed JSON ({exc})") from None
                rows.append(tuple(row.get(c) for c in columns))
        return rows


class SitePackagesSource(BaseModel):
    """Installed distributions as repositories (default: all of the running environment's site-packages)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["site-packages"]
    path: str | None = Field(default=None, description="a site-packages directory; default: this environment's")
    distributions: list[str] | None = Field(default=None, description="names to read; default: every one")

    def site_dir(self) -> Path:
        return Path(self.path) if self.path else Path(sysconfig.get_paths()["purelib"])

    def installed(self) -> dict[str, importlib_metadata.Distribution]:
        """Normalized name -> distribution, one per name (the first found in path order)."""
        return installed_distributions(str(self.site_dir()))

    def units(self) -> list[str]:
        installed = self.installed()
        if self.distributions is None:
            return sorted(installed)
        wanted = [normalize_distribution_name(n) for n in self.distributions]
        missing = [n for n, w in zip(self.distributions, wanted, strict=True) if w not in installed]
        if missing:
            raise Nano2Error(f"source.distributions: not installed in {self.site_dir()}: {', '.join(missing)}")
        return sorted(set(wanted))

    def repositories(self, unit: str, max_bytes: int) -> Iterator[Repository]:
        dist = self.installed()[unit]
        yield f"{unit}-{dist.version}", distribution_files(dist, self.site_dir())


SourceConfig = Annotated[RepositoriesSource | TableSource | SitePackagesSource, Field(discriminator="kind")]


@functools.lru_cache(maxsize=4)
def installed_distributions(site_dir: str) -> dict[str, importlib_metadata.Distribution]:
    """Normalized name -> distribution installed in `site_dir` (the first found for a name)."""
    found: dict[str, importlib_metadata.Distribution] = {}
    for dist in sorted(importlib_metadata.distributions(path=[site_dir]), key=lambda d: (d.name or "", d.version)):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normalize_distribution_name(name), dist)
    return found


def normalize_distribution_name(name: str) -> str:
    """PEP 503 normalization: `Jinja2`, `jinja_2` and `jinja-2` name the same distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _archive_name(name: str) -> str:
    lower = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _file_reader(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


# Files that make a folder a package of its own (its license then comes from its own files, not its parent's).
PACKAGE_MANIFESTS = frozenset({"package.json", "pyproject.toml", "setup.py", "setup.cfg", "cargo.toml", "go.mod",
                               "metadata", "pkg-info", "composer.json", "gemspec"})  # fmt: skip


def is_package_folder(folder: Path) -> bool:
    """Does the folder hold a package manifest or a license file of its own?"""
    try:
        names = [p.name.lower() for p in folder.iterdir() if p.is_file()]
    except OSError:
        return False
    return any(n in PACKAGE_MANIFESTS or n.endswith(".gemspec") or candidate_kind(n) == CandidateKind.LICENSE
               for n in names)  # fmt: skip


def package_subfolders(folder: Path) -> list[str]:
    """The packages a grouping folder holds (`@scope/name` under node_modules), or [] when it is a package itself.

    A folder is a grouping folder when it has no manifest or license file of its own and its subfolders are
    packages (all of them for a plain folder; any of them for an npm `@scope`).
    """
    if is_package_folder(folder):
        return []
    try:
        children = sorted(
            p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
        )
        has_files = any(p.is_file() for p in folder.iterdir())
    except OSError:
        return []
    packages = [p.name for p in children if is_package_folder(p)]
    if not packages:
        return []
    if folder.name.startswith("@") or (not has_files and len(packages) == len(children)):
        return packages
    return []


def _symlink_issue(link: Path, root: Path) -> tuple[str | None, Path | None]:
    """How a symlink inside a repository resolves: (None, target) for a file inside the repository, else the
    issue: `symlink_dangling`, `symlink_loop`, `symlink_outside` (never followed out of the repository) or
    `symlink_directory` (its files are read where they really are)."""
    try:
        target = link.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return "symlink_loop", None
    except OSError as exc:
        return ("symlink_loop" if exc.errno == errno.ELOOP else "symlink_dangling"), None
    if not target.is_relative_to(root.resolve()):
        return "symlink_outside", None
    if target.is_dir():
        return "symlink_directory", None
    if not target.is_file():
        return "symlink_dangling", None
    return None, target


def walk_directory(root: Path) -> Iterator[SourceFile]:
    """Files under a repository directory, sorted, without `.git`.

    Symlinks are never followed out of the repository: one to a file inside it is read (a `LICENSE` that links to
    `docs/LICENSE.md` is that license); a dangling link, a loop, a link out of the repository or to a directory
    is listed with its issue, for the reader to count as a drop.
    """
    entries: list[SourceFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        linked_dirs = [d for d in dirnames if (here / d).is_symlink()]
        dirnames[:] = sorted(d for d in dirnames if d != ".git" and d not in linked_dirs)
        for name in [*filenames, *linked_dirs]:
            full = here / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                issue, target = _symlink_issue(full, root)
                if issue is not None:
                    entries.append(SourceFile(rel, 0, _unreadable(issue), True, str(full), issue))
                    continue
                full = target
            try:
                size = full.stat().st_size
            except OSError:
                size = 0
            entries.append(SourceFile(rel, size, _file_reader(full), location=str(full)))
    yield from sorted(entries, key=lambda f: f.path)


def _unreadable(issue: str) -> Callable[[], bytes]:
    def read() -> bytes:
        raise OSError(issue)

    return read


def directory_content_hash(root: Path) -> str:
    """A hash of a directory tree that never follows a symlink (a link is hashed as its target's name), so a
    dangling link or a loop under the input root is part of the input, not a crash."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames.sort()
        for name in sorted([*filenames, *(d for d in dirnames if (here / d).is_symlink())]):
            full = here / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                digest.update(f"{rel}\0link\0{os.readlink(full)}\n".encode())
                continue
            try:
                file_digest = hashlib.sha256(full.read_bytes()).hexdigest()
            except OSError as exc:
                file_digest = f"unreadable:{exc.errno}"
            digest.update(f"{rel}\0{file_digest}\n".encode())
    return digest.hexdigest()


def _common_prefix(names: list[str]) -> str:
    """`repo-1.0/` when every member is under that one top folder (GitHub tarballs), else empty."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        return next(iter(tops)) + "/"
    return ""


def _walk_archive(path: Path, max_bytes: int) -> Iterator[SourceFile]:
    """Regular files of a tar or zip archive, sorted, with a single top folder removed.

    Members are read in archive order (a compressed tar cannot seek back cheaply) and kept in memory when they are
    at most `max_bytes`; larger ones are listed with their size but not read, since the reader drops them anyway.
    """
    entries: list[SourceFile] = []
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir() and "/.git/" not in f"/{i.filename}"]
            prefix = _common_prefix([i.filename for i in infos])
            for info in infos:
                content = archive.read(info.filename) if info.file_size <= max_bytes else None
                entries.append(SourceFile(info.filename[len(prefix) :], info.file_size, _buffered(content)))
    else:
        with tarfile.open(path) as archive:
            members = [m for m in archive if (m.isfile() or m.issym() or m.islnk()) and "/.git/" not in f"/{m.name}"]
            prefix = _common_prefix([m.name for m in members])
            for member in members:
                rel = member.name[len(prefix) :]
                if not member.isfile():
                    entries.append(SourceFile(rel, 0, _buffered(b""), is_symlink=True))
                    continue
                content = None
                if member.size <= max_bytes and (handle := archive.extractfile(member)) is not None:
                    content = handle.read()
                entries.append(SourceFile(rel, member.size, _buffered(content)))
    yield from sorted(entries, key=lambda f: f.path)


def _buffered(content: bytes | None) -> Callable[[], bytes]:
    def read() -> bytes:
        if content is None:
            raise OSError("archive member over the size limit was not read")
        return content

    return read


def _table_files(rows: list[tuple[str, object]]) -> Iterator[SourceFile]:
    for path, content in rows:
        if content is None:
            yield SourceFile(path, 0, _missing_content)
            continue
        data = content.encode("utf-8", errors="surrogatepass") if isinstance(content, str) else bytes(content)
        yield SourceFile(path, len(data), lambda data=data: data)


def _missing_content() -> bytes:
    raise OSError("the table row has no content")


def distribution_files(dist: importlib_metadata.Distribution, site_dir: Path) -> Iterator[SourceFile]:
    """The files of an installed distribution at their project paths (see the module docstring)."""
    records = [PurePosixPath(str(f)) for f in dist.files or []]
    real = [p for p in records if p.parts and p.parts[0] != ".." and not _is_install_record_dir(p.parts[0])]
    top_dirs = {p.parts[0] for p in real if len(p.parts) > 1}
    mapped: dict[str, Path] = {}
    for record in real:
        mapped.setdefault(record.as_posix(), site_dir / record)
    for record in records:
        if not record.parts or not _is_install_record_dir(record.parts[0]):
            continue
        target = _project_path(record, top_dirs)
        if target is not None:
            mapped.setdefault(target, site_dir / record)
    for rel in sorted(mapped):
        full = mapped[rel]
        try:
            size = full.stat().st_size
        except OSError:
            size = 0
        yield SourceFile(rel, size, _file_reader(full), is_symlink=full.is_symlink(), location=str(full))


def _is_install_record_dir(part: str) -> bool:
    return part.endswith((".dist-info", ".egg-info"))


def _project_path(record: PurePosixPath, top_dirs: set[str]) -> str | None:
    """Where a file of `*.dist-info/` was in the project, or None for install records (RECORD, WHEEL, ...)."""
    inner = record.parts[1:]
    if not inner:
        return None
    if inner[0] == "licenses" and len(inner) > 1:
        rel = PurePosixPath(*inner[1:])
        if rel.parts[0] == "src" and len(rel.parts) > 2 and rel.parts[1] in top_dirs:  # src layout
            rel = PurePosixPath(*rel.parts[1:])
        return rel.as_posix()
    if len(inner) == 1 and inner[0] in ("METADATA", "PKG-INFO"):
        return "PKG-INFO"
    if len(inner) == 1 and candidate_kind(inner[0]) in (CandidateKind.LICENSE, CandidateKind.NOTICE):
        return inner[0]
    return None
