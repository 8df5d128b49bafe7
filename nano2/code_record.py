"""Which code a command really ran: the repository files it imported or opened, and the third-party distributions
it imported, written when the process exits.

Why at run time: a stage's fingerprint must change when any code it runs changes, and only then. A hand-written
list of packages per command is wrong as soon as someone adds an import (`nano2/units.py` decides what `300K`
means for every stage, and no list named it); a static import graph over-approximates (a CLI module imports every
subcommand). So the recipe runner sets `NANO2_CODE_RECORD=<folder>` for each stage, every `nano2` process of the
stage (torchrun ranks included) writes `<folder>/<pid>.json` at exit, and the runner hashes exactly those files
the next time it decides whether the stage is cached. Files read through `open` (SQL queries, word lists, shipped
models, prompt templates) count as code too; data under the run directory does not.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from importlib import metadata
from pathlib import Path

RECORD_ENV = "NANO2_CODE_RECORD"
REPO = Path(__file__).resolve().parent.parent
# Not code: the environment, version control, caches, run outputs, tests.
_IGNORED_TOP = {".venv", ".git", "runs", ".pytest_cache", ".ruff_cache", ".hypothesis", "tests", "__pycache__"}


def _repo_relative(path: str | os.PathLike | None, exclude: tuple[Path, ...]) -> str | None:
    if not path:
        return None
    try:
        resolved = Path(os.fsdecode(path)).resolve()
        rel = resolved.relative_to(REPO)
    except (ValueError, OSError, TypeError):
        return None
    if not rel.parts or rel.parts[0] in _IGNORED_TOP or "__pycache__" in rel.parts:
        return None
    if any(resolved.is_relative_to(e) for e in exclude):
        return None
    return rel.as_posix()


def _distributions(modules: list[str]) -> dict[str, str]:
    """Versions of the installed distributions that provide the imported top-level modules."""
    try:
        by_module = metadata.packages_distributions()
    except Exception:  # a broken dist-info must not fail the command that is exiting
        return {}
    versions: dict[str, str] = {}
    for module in modules:
        for dist in by_module.get(module, ()):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return versions


def start_recording() -> None:
    """If `NANO2_CODE_RECORD` is set, record this process's repository files and distributions at exit."""
    folder = os.environ.get(RECORD_ENV)
    if not folder:
        return
    exclude = tuple(Path(p).resolve() for p in (folder, os.environ.get("NANO2_RUN_DIR")) if p)
    opened: set[str] = set()

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            rel = _repo_relative(args[0], exclude)
            if rel is not None and os.path.isfile(REPO / rel):
                opened.add(rel)

    sys.addaudithook(hook)
    pid = os.getpid()

    def write() -> None:
        if os.getpid() != pid:  # a forked worker exiting normally: the parent records
            return
        files = set(opened)
        top_level = set()
        for name, module in list(sys.modules.items()):
            rel = _repo_relative(getattr(module, "__file__", None), exclude)
            if rel is not None:
                files.add(rel)
            elif "." not in name and getattr(module, "__file__", None):
                top_level.add(name)
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        body = {"files": sorted(files), "distributions": _distributions(sorted(top_level))}
        tmp = out / f".{pid}.json.tmp"
        tmp.write_text(json.dumps(body, indent=1) + "\n")
        tmp.replace(out / f"{pid}.json")

    atexit.register(write)


def read_records(folder: Path) -> tuple[list[str], dict[str, str]]:
    """Union of every process's record in `folder`: (repository files, distribution versions)."""
    files: set[str] = set()
    dists: dict[str, str] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            body = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        files.update(body.get("files", []))
        dists.update(body.get("distributions", {}))
    return sorted(files), dict(sorted(dists.items()))
