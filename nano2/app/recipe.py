"""`nano2 run RECIPE`: the whole recipe as an ordered list of stages, each cached by a fingerprint.

A recipe (recipes/tiny.yaml, recipes/nano2.yaml) lists stages. A stage is one `nano2 ...` command (run in a
subprocess, so a crash or an out-of-memory kill stops that stage only), optionally with a config file that the
runner copies into the run with `overrides` applied (dotted keys), so one recipe file holds every knob that differs
from the package defaults.

Why fingerprints: a stage is skipped when its fingerprint matches the one recorded after its last successful run
and its outputs check out (every manifest under them parses and lists files that exist with the recorded sizes;
content hashes too with `--verify`). The fingerprint hashes the stage as declared, its resolved config, the
content of the files it `watches`, the code its last run really ran (every repository file it imported or opened
and the versions of the distributions it imported, recorded by the stage's own processes: nano2.code_record), and
the fingerprints of the stages it comes `after`. So editing a mixture weight changes only the plan stage's config,
and only the plan and what depends on it run again; editing `nano2/units.py` re-runs every stage that imported it.

Interrupted is not failed: a stage whose runner was killed reads `interrupted`; a `resumable` stage keeps its
outputs and its command continues from them (training from its last checkpoint, synthesis from its request
cache, curation from datatrove's completions), any other is cleaned and run again. One runner per run dir (an
OS lock); stages run `-j` at a time in dependency order (`after`), each in its own process group that dies with
the runner.

State lives in `<run_dir>/.recipe/` (a dot folder, so `nano2 audit` does not read it as data): one JSON file per
stage (fingerprint, status, seconds, command, log, output inventory), one log file per stage, the code records,
the lock, and `finals.json` (the outputs the recipe declares final).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nano2.app.cli import SUB_APPS
from nano2.code_record import RECORD_ENV, read_records
from nano2.config import load_yaml_model, read_yaml, validate_model
from nano2.contracts.shards import RUN_STATE_DIR
from nano2.errors import ConfigError, Nano2Error
from nano2.manifest import MANIFEST_NAME, hash_file, read_manifest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO / "recipes" / "tiny.yaml"
STATE_DIR = RUN_STATE_DIR

# The `nano2` commands a stage may run. Which code each one runs is not listed here: it is recorded when the stage
# runs (nano2.code_record) and hashed into the stage's fingerprint.
COMMANDS: tuple[str, ...] = (*(name for name, _ in SUB_APPS), "audit")


class StageSpec(BaseModel):
    """One step of a recipe: a `nano2` command line, its config and what it depends on."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    help: str = ""
    run: list[str] = Field(min_length=1, description="nano2 arguments, e.g. [train, pretrain, '{config}']")
    launch: list[str] = Field(
        default_factory=list,
        description="runs `-m nano2.app.cli ...` instead of this Python, e.g. [torchrun, --nproc_per_node, '8']",
    )
    config: str | None = Field(None, description="config file copied into the run with `overrides` applied")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted keys -> values, merged into config")
    after: list[str] = Field(default_factory=list, description="stages whose outputs this one reads")
    watch: list[str] = Field(default_factory=list, description="input files or folders hashed into the fingerprint")
    outputs: list[str] = Field(default_factory=list, description="paths written; removed before a re-run")
    requires: list[str] = Field(
        default_factory=list, description="paths that must exist; when one is missing the stage is skipped with a note"
    )
    resumable: bool = Field(
        False,
        description="its command continues from what its outputs already hold (training checkpoints, a request "
        "cache, datatrove completions): an interrupted run keeps them instead of starting over",
    )
    final: list[str] = Field(
        default_factory=list, description="paths it writes that are final artifacts of the run (audit lineage roots)"
    )

    @field_validator("run")
    @classmethod
    def _known_command(cls, run: list[str]) -> list[str]:
        if run[0] not in COMMANDS:
            raise ValueError(f"unknown nano2 command {run[0]!r}; expected one of {', '.join(COMMANDS)}")
        return run


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    scale: Literal["micro", "tiny", "full"] = "tiny"
    run_dir: str
    variables: dict[str, str] = Field(default_factory=dict, description="extra {name} placeholders")
    env: dict[str, str] = Field(
        default_factory=dict, description="environment of every stage's process (not part of fingerprints)"
    )
    stages: list[StageSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_graph(self) -> Recipe:
        seen: set[str] = set()
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"stage {stage.name!r} is declared twice")
            for dep in stage.after:
                if dep not in seen:
                    known = f"earlier stages: {', '.join(sorted(seen))}" if seen else "it is the first stage"
                    raise ValueError(f"stage {stage.name!r}: after {dep!r} is not an earlier stage ({known})")
            seen.add(stage.name)
        return self

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise Nano2Error(f"no stage {name!r} in recipe {self.name}; stages: {', '.join(s.name for s in self.stages)}")


def load_recipe(path: str | Path) -> Recipe:
    """Load a recipe; one with `extends: other.yaml` starts from that recipe and patches stages by name."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict) or "extends" not in raw:
        return load_yaml_model(path, Recipe)
    return validate_model(_extend(raw, path), Recipe, path)


def _extend(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """`extends` + `patch: {stage: {field: value, overrides: {...}}}`; `overrides` are merged, other fields replaced."""
    base_path = (path.parent / raw["extends"]).resolve()
    base = read_yaml(base_path)
    if not isinstance(base, dict):
        raise ConfigError(base_path, None, "expected a recipe mapping")
    if "extends" in base:
        base = _extend(base, base_path)
    merged = {k: v for k, v in base.items() if k != "stages"}
    merged.update({k: v for k, v in raw.items() if k not in ("extends", "patch")})
    patch = raw.get("patch") or {}
    if not isinstance(patch, dict):
        raise ConfigError(path, "patch", "expected a mapping of stage name -> fields")
    stages = deepcopy(base.get("stages") or [])
    names = [s.get("name") for s in stages if isinstance(s, dict)]
    for name, fields in patch.items():
        if name not in names:
            raise ConfigError(
                path, f"patch.{name}", f"no stage {name!r} in {base_path.name}; stages: {', '.join(names)}"
            )
        if not isinstance(fields, dict):
            raise ConfigError(path, f"patch.{name}", "expected a mapping of stage fields")
        stage = stages[names.index(name)]
        for key, value in fields.items():
            if key == "overrides":
                stage["overrides"] = {**(stage.get("overrides") or {}), **(value or {})}
            else:
                stage[key] = value
    merged["stages"] = stages
    return merged


# --------------------------------------------------------------------------------------------------- templating


def shared_data_dir() -> Path:
    """The shared real-data folder: $NANO2_SHARED_DATA or ../shared/data beside the repository."""
    return Path(os.environ.get("NANO2_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


def fill(template: str, values: dict[str, str], where: str) -> str:
    try:
        return template.format(**values)
    except KeyError as exc:
        known = ", ".join(sorted(values))
        raise Nano2Error(f"{where}: unknown placeholder {{{exc.args[0]}}}; known: {known}") from None
    except (ValueError, IndexError) as exc:
        raise Nano2Error(f"{where}: bad placeholder in {template!r} ({exc})") from None


def fill_any(value: Any, values: dict[str, str], where: str) -> Any:
    if isinstance(value, str):
        return fill(value, values, where)
    if isinstance(value, list):
        return [fill_any(v, values, where) for v in value]
    if isinstance(value, dict):
        return {k: fill_any(v, values, f"{where}.{k}") for k, v in value.items()}
    return value


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """Set dotted keys (`phases.0.weights.code: 0.3` or nested dicts); list items by index."""
    out = deepcopy(config)
    for dotted, value in overrides.items():
        node: Any = out
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    what = f"{part!r} is not an index of a {len(node)}-item list"
                    raise Nano2Error(f"{where}: override {dotted!r}: {what}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise Nano2Error(f"{where}: override {dotted!r}: {'.'.join(parts[:i])} is not a mapping or list")
    return out


# --------------------------------------------------------------------------------------------------- hashing


def _hash_path(path: Path, digest: hashlib._Hash) -> None:
    """Hash names and contents (files) under a path; a missing path hashes as missing."""
    if not path.exists():
        digest.update(f"missing:{path}".encode())
        return
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for f in files:
        digest.update(str(f.relative_to(path) if f != path else f.name).encode())
        stat = f.stat()
        if stat.st_size > 64 << 20:  # big data files: size + mtime, not content
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        else:
            digest.update(hashlib.sha256(f.read_bytes()).digest())


def recorded_code_hash(record_dir: Path) -> dict[str, Any]:
    """Hash of the repository files and the distribution versions a stage's last successful run recorded; a stage
    that never finished has no record (and runs anyway)."""
    files, distributions = read_records(record_dir)
    if not files:
        return {"recorded": False}
    digest = hashlib.sha256()
    for rel in files:
        path = REPO / rel
        digest.update(rel.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"missing")
    return {"files": len(files), "hash": digest.hexdigest(), "distributions": distributions}


# --------------------------------------------------------------------------------------------------- outputs


def output_inventory(outputs: list[Path]) -> dict[str, list[str]]:
    """For each output, the manifests under it (relative paths): what a cache check verifies later."""
    inventory: dict[str, list[str]] = {}
    for path in outputs:
        found = sorted(p.relative_to(path).as_posix() for p in path.rglob(MANIFEST_NAME)) if path.is_dir() else []
        inventory[str(path)] = found
    return inventory


def output_problem(outputs: list[Path], inventory: dict[str, list[str]] | None, verify: bool = False) -> str | None:
    """Why a finished stage's outputs cannot be trusted (a missing path, a manifest that does not parse, a listed
    file missing or of another size; with `verify`, another content hash), or None."""
    for path in outputs:
        if not path.exists():
            return f"{path} is missing"
    for out, manifests in (inventory or {}).items():
        for rel in manifests:
            where = Path(out) / rel
            try:
                manifest = read_manifest(where)
            except (Nano2Error, OSError) as exc:
                return f"{where}: {exc}"
            for entry in manifest.files:
                file = where.parent / entry.path
                if not file.is_file():
                    return f"{file} is listed in {where} but missing"
                if file.stat().st_size != entry.bytes:
                    return f"{file} has {file.stat().st_size} bytes, {where} records {entry.bytes}"
                if verify and entry.sha256 is not None and hash_file(file) != entry.sha256:
                    return f"{file} content differs from the sha256 {where} records"
    return None


# --------------------------------------------------------------------------------------------------- lock


class RunLock:
    """One `nano2 run` per run dir: an exclusive OS lock (flock) on `.recipe/lock`, released when the process
    ends however it ends, so a killed runner never leaves a stale lock behind."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "lock"
        self._fd: int | None = None

    def holder(self) -> int | None:
        """The pid holding the lock, or None when it is free."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = self.path.read_text().strip()
            return int(text) if text.isdigit() else -1
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            text = self.path.read_text().strip()
            run_dir = self.path.parent.parent
            raise Nano2Error(f"{run_dir} is in use by another `nano2 run` (pid {text or 'unknown'})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _libc_prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _libc_prctl()  # resolved here, in the parent: the forked child only calls it
_PR_SET_PDEATHSIG = 1


def _die_with_runner() -> None:
    """In a stage's process, before exec: the kernel kills it when the runner's thread that started it dies (a
    killed runner leaves no stage running; its pool workers are in the stage's process group, killed next run)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_group(pgid: int | None) -> None:
    """Kill the process group a stage ran in, if it is still a `nano2` stage (never a reused pid's group)."""
    if not pgid:
        return
    try:
        cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    if b"nano2" not in cmdline:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------------- runner

INTERRUPTED_STATES = ("running", "interrupted")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class StageResult:
    name: str
    status: str  # "ran", "skipped", "failed", "missing-input", "not-selected", "interrupted"
    seconds: float = 0.0
    note: str = ""


class Runner:
    """Runs a recipe's stages with caching, `jobs` at a time in dependency order; `run()` returns one result per
    stage, in recipe order."""

    def __init__(
        self,
        recipe: Recipe,
        recipe_path: Path,
        run_dir: Path | None = None,
        python: str | None = None,
        verify: bool = False,
    ):
        self.recipe = recipe
        self.recipe_path = recipe_path
        self.run_dir = (run_dir or Path(fill(recipe.run_dir, self._base_values(), "run_dir"))).resolve()
        self.state_dir = self.run_dir / STATE_DIR
        self.python = python or sys.executable
        self.verify = verify
        self.fingerprints: dict[str, str] = {}
        self.jobs = 1
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def _base_values(self) -> dict[str, str]:
        return {"repo": str(REPO), "shared_data": str(shared_data_dir()), **self.recipe.variables}

    def values(self, stage: StageSpec | None = None) -> dict[str, str]:
        values = {**self._base_values(), "run_dir": str(self.run_dir), "recipe": str(self.recipe_path)}
        if stage is not None:
            values["stage_dir"] = str(self.state_dir / "stages" / stage.name)
            values["config"] = str(self.config_path(stage))
        return values

    def config_path(self, stage: StageSpec) -> Path:
        suffix = Path(stage.config).suffix if stage.config else ".yaml"
        return self.state_dir / "configs" / f"{stage.name}{suffix}"

    def state_path(self, stage: StageSpec) -> Path:
        return self.state_dir / "state" / f"{stage.name}.json"

    def log_path(self, stage: StageSpec) -> Path:
        return self.state_dir / "logs" / f"{stage.name}.log"

    def code_record_dir(self, stage: StageSpec, running: bool = False) -> Path:
        return self.state_dir / "code" / (f"{stage.name}.running" if running else stage.name)

    def read_state(self, stage: StageSpec) -> dict[str, Any] | None:
        path = self.state_path(stage)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None

    # -- resolving ------------------------------------------------------------------------------------------

    def resolved_config(self, stage: StageSpec) -> dict[str, Any] | None:
        if stage.config is None:
            return None
        values = self.values(stage)
        path = Path(fill(stage.config, values, f"{stage.name}.config"))
        if not path.is_absolute():
            path = REPO / path
        base = read_yaml(path)
        if not isinstance(base, dict):
            raise ConfigError(path, None, "expected a mapping at the top level")
        overrides = fill_any(stage.overrides, values, f"{stage.name}.overrides")
        return apply_overrides(base, overrides, f"{self.recipe_path}: stages.{stage.name}")

    def command(self, stage: StageSpec) -> list[str]:
        args = fill_any(stage.run, self.values(stage), f"{stage.name}.run")
        launcher = fill_any(stage.launch, self.values(stage), f"{stage.name}.launch") or [self.python]
        return [*launcher, "-m", "nano2.app.cli", *args]

    def fingerprint(self, stage: StageSpec) -> str:
        """The stage as declared, its resolved config, its watched inputs, the code its last run really ran
        (nano2.code_record) and the fingerprints of the stages it comes after."""
        digest = hashlib.sha256()
        values = self.values(stage)
        body = {
            "stage": stage.model_dump(mode="json", exclude={"help", "final"}),
            "command": fill_any(stage.run, values, stage.name),
            "config": self.resolved_config(stage),
            "after": {dep: self.fingerprints.get(dep) for dep in stage.after},
            "code": recorded_code_hash(self.code_record_dir(stage)),
        }
        digest.update(json.dumps(body, sort_keys=True, default=str).encode())
        for watched in stage.watch:
            path = Path(fill(watched, values, f"{stage.name}.watch"))
            _hash_path(path if path.is_absolute() else REPO / path, digest)
        return digest.hexdigest()[:16]

    def outputs(self, stage: StageSpec) -> list[Path]:
        values = self.values(stage)
        return [Path(fill(o, values, f"{stage.name}.outputs")) for o in stage.outputs]

    def missing_requirements(self, stage: StageSpec) -> list[Path]:
        values = self.values(stage)
        return [p for p in (Path(fill(r, values, f"{stage.name}.requires")) for r in stage.requires) if not p.exists()]

    def status_now(self, stage: StageSpec) -> str:
        """The stage's last status, where a `running` stage whose runner is gone reads `interrupted`."""
        state = self.read_state(stage) or {}
        status = state.get("status", "-")
        if status == "running" and RunLock(self.state_dir).holder() is None:
            return "interrupted"
        return status

    def cache_problem(self, stage: StageSpec, state: dict[str, Any] | None, fingerprint: str) -> str | None:
        """Why the stage is not cached (None: it is)."""
        if state is None or state.get("status") != "done":
            return "not finished" if state is None else f"last status {state.get('status')}"
        if state.get("fingerprint") != fingerprint:
            return "code, config or inputs changed"
        return output_problem(self.outputs(stage), state.get("inventory"), self.verify)

    # -- running --------------------------------------------------------------------------------------------

    def plan(self, only: list[str] | None = None, start: str | None = None) -> dict[str, str]:
        """Each selected stage's mode: "force" (run it), "cache" (run unless cached) or "reuse" (before --from: keep
        its finished outputs even if its code or inputs changed since); stages absent are not selected."""
        names = [s.name for s in self.recipe.stages]
        for name in [*(only or []), *([start] if start else [])]:
            self.recipe.stage(name)
        if only:
            return {name: "force" for name in names if name in only}
        if start:
            return {name: "force" if i >= names.index(start) else "reuse" for i, name in enumerate(names)}
        return {name: "cache" for name in names}

    def would_run(self) -> dict[str, bool]:
        """For every stage, whether a plain `nano2 run` would run it now (nothing is run)."""
        out = {}
        for stage in self.recipe.stages:
            self.fingerprints[stage.name] = fingerprint = self.fingerprint(stage)
            problem = self.cache_problem(stage, self.read_state(stage), fingerprint)
            out[stage.name] = problem is not None and not self.missing_requirements(stage)
        return out

    def run(
        self,
        only: list[str] | None = None,
        start: str | None = None,
        on_event: Callable[[str, StageSpec, StageResult | None], None] | None = None,
        jobs: int = 1,
    ) -> list[StageResult]:
        """Run the selected stages, up to `jobs` at once: a stage starts when every stage it comes `after` has
        ended. After a failure no new stage starts; those running finish, then the error is raised."""
        if jobs < 1:
            raise Nano2Error(f"jobs must be >= 1, got {jobs}")
        selected = self.plan(only, start)
        stages = self.recipe.stages
        self.jobs = jobs
        results: dict[str, StageResult] = {}
        started = time.time()
        failed: str | None = None
        with RunLock(self.state_dir):
            self._mark_interrupted()
            self._write_finals()  # declared up front: the report stage reads them
            pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="stage")
            running: dict[Future, StageSpec] = {}
            try:
                while len(results) < len(stages):
                    for stage in stages:
                        if stage.name in results or stage in running.values() or failed:
                            continue
                        if not all(dep in results for dep in stage.after):
                            continue
                        # Fingerprints of unselected stages still feed their dependants' fingerprints.
                        self.fingerprints[stage.name] = self.fingerprint(stage)
                        if stage.name not in selected:
                            results[stage.name] = StageResult(stage.name, "not-selected")
                            continue
                        if len(running) >= jobs:
                            break
                        if on_event:
                            on_event("start", stage, None)
                        running[pool.submit(self.run_stage, stage, selected[stage.name])] = stage
                    if not running:
                        if failed or len(results) == len(stages):
                            break
                        continue
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        stage = running.pop(future)
                        result = future.result()
                        results[stage.name] = result
                        if result.status == "ran":  # its code record is new: dependants see the new fingerprint
                            self.fingerprints[stage.name] = self.read_state(stage)["fingerprint"]
                        if on_event:
                            on_event("end", stage, result)
                        if result.status == "failed" and failed is None:
                            failed = stage.name
                        self._write_run_summary(results, started, finished=False)
                    if failed and not running:
                        break
            except BaseException:
                self._interrupt(running.values())
                pool.shutdown(wait=True, cancel_futures=True)
                self._write_run_summary(results, started, failed="interrupted")
                raise
            pool.shutdown(wait=True)
        ordered = [results.get(s.name, StageResult(s.name, "not-selected", note="not started")) for s in stages]
        self._write_run_summary(results, started, failed=failed)
        if failed:
            raise Nano2Error(results[failed].note)
        return ordered

    def _mark_interrupted(self) -> None:
        """Under the lock, a `running` stage is one whose runner died: mark it, and kill what it left running."""
        for stage in self.recipe.stages:
            state = self.read_state(stage)
            if state and state.get("status") == "running":
                _kill_group(state.get("pgid"))
                state["status"] = "interrupted"
                self.state_path(stage).write_text(json.dumps(state, indent=2) + "\n")

    def _interrupt(self, stages: Any) -> None:
        for stage in list(stages):
            proc = self._procs.get(stage.name)
            if proc is not None and proc.poll() is None:
                _kill_group(proc.pid)
            state = self.read_state(stage)
            if state and state.get("status") == "running":
                state["status"] = "interrupted"
                self.state_path(stage).write_text(json.dumps(state, indent=2) + "\n")

    def run_stage(self, stage: StageSpec, mode: str = "cache") -> StageResult:
        fingerprint = self.fingerprints.get(stage.name) or self.fingerprint(stage)
        state = self.read_state(stage)
        outputs = self.outputs(stage)
        missing = self.missing_requirements(stage)
        if missing:
            note = "input not present: " + ", ".join(str(p) for p in missing) + "; continuing without this stage"
            self._write_state(stage, fingerprint, "missing-input", 0.0, note=note)
            return StageResult(stage.name, "missing-input", note=note)
        finished = state is not None and state.get("status") == "done"
        if finished and mode == "reuse" and all(p.exists() for p in outputs):
            return StageResult(stage.name, "skipped", state.get("seconds", 0.0), note="reused (before --from)")
        note = ""
        if mode == "cache":
            problem = self.cache_problem(stage, state, fingerprint)
            if problem is None:
                return StageResult(stage.name, "skipped", state.get("seconds", 0.0), note="cached")
            if finished and state.get("fingerprint") == fingerprint:  # finished, unchanged, but its outputs broke
                note = f"cached outputs cannot be trusted ({problem}); re-running"
        interrupted = state is not None and state.get("status") in INTERRUPTED_STATES
        if interrupted and stage.resumable and state.get("fingerprint") == fingerprint and mode != "force":
            kept = [p for p in outputs if p.exists()]
            files = sum(1 for p in kept for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file())
            note = f"resumed: kept {files} files of the interrupted run in {len(kept)} output(s)"
        else:
            if interrupted and not note:
                why = "not resumable" if not stage.resumable else "its code, config or inputs changed"
                note = f"outputs of the interrupted run removed ({why})"
            for path in outputs:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        return self._execute(stage, fingerprint, note)

    def _execute(self, stage: StageSpec, fingerprint: str, note: str) -> StageResult:
        config = self.resolved_config(stage)
        if config is not None:
            path = self.config_path(stage)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(config, sort_keys=False))
        log = self.log_path(stage)
        log.parent.mkdir(parents=True, exist_ok=True)
        record = self.code_record_dir(stage, running=True)
        shutil.rmtree(record, ignore_errors=True)
        cmd = self.command(stage)
        env = {
            **os.environ,
            **fill_any(self.recipe.env, self.values(stage), "env"),
            "NANO2_RUN_DIR": str(self.run_dir),
            "NANO2_SHARED_DATA": str(shared_data_dir()),
            RECORD_ENV: str(record),
        }
        for var in THREAD_VARS:  # stages side by side share the cores: unless told otherwise, split them
            env.setdefault(var, str(max(1, (os.cpu_count() or 1) // self.jobs)))
        t0 = time.time()
        with log.open("w") as out:
            out.write("$ " + " ".join(cmd) + "\n" + (f"# {note}\n" if note else ""))
            out.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_runner,
            )
            with self._lock:
                self._procs[stage.name] = proc
            self._write_state(stage, fingerprint, "running", 0.0, command=cmd, pgid=proc.pid, note=note)
            returncode = proc.wait()
        seconds = time.time() - t0
        outputs = self.outputs(stage)
        if returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            failure = f"stage {stage.name} failed (exit {returncode}) after {seconds:.0f} s; log: {log}; "
            failure += " | ".join(tail)
            self._write_state(stage, fingerprint, "failed", seconds, command=cmd, note=failure)
            return StageResult(stage.name, "failed", seconds, note=failure)
        absent = [str(p) for p in outputs if not p.exists()]
        if absent:
            failure = f"stage {stage.name} exited 0 but did not write {', '.join(absent)}; log: {log}"
            self._write_state(stage, fingerprint, "failed", seconds, command=cmd, note=failure)
            return StageResult(stage.name, "failed", seconds, note=failure)
        final_record = self.code_record_dir(stage)
        shutil.rmtree(final_record, ignore_errors=True)
        if record.exists():
            record.rename(final_record)
        fingerprint = self.fingerprint(stage)  # now with the code this run recorded
        inventory = output_inventory(outputs)
        self._write_state(stage, fingerprint, "done", seconds, command=cmd, note=note, inventory=inventory)
        return StageResult(stage.name, "ran", seconds, note=note)

    def _write_state(self, stage: StageSpec, fingerprint: str, status: str, seconds: float, **extra: Any) -> None:
        path = self.state_path(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "stage": stage.name,
            "help": stage.help,
            "fingerprint": fingerprint,
            "status": status,
            "seconds": round(seconds, 3),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "log": str(self.log_path(stage)),
            "outputs": [str(p) for p in self.outputs(stage)],
            **extra,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        tmp.replace(path)

    def _write_finals(self) -> None:
        """`.recipe/finals.json`: the artifacts the recipe declares final, relative to the run dir."""
        finals = [
            os.path.relpath(fill(path, self.values(stage), f"{stage.name}.final"), self.run_dir)
            for stage in self.recipe.stages
            for path in stage.final
        ]
        (self.state_dir / "finals.json").write_text(json.dumps({"finals": finals}, indent=2) + "\n")

    def _write_run_summary(
        self, results: dict[str, StageResult], started: float, failed: str | None = None, finished: bool = True
    ) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        body = {
            "recipe": self.recipe.name,
            "recipe_path": str(self.recipe_path),
            "scale": self.recipe.scale,
            "run_dir": str(self.run_dir),
            "wall_seconds": round(time.time() - started, 3),
            "failed": failed,
            "finished": finished,
            "stages": [
                results[s.name].__dict__ if s.name in results else {"name": s.name, "status": "pending"}
                for s in self.recipe.stages
            ],
        }
        (self.state_dir / "last_run.json").write_text(json.dumps(body, indent=2) + "\n")


# --------------------------------------------------------------------------------------------------- CLI


def resolve_recipe_path(recipe: Path) -> Path:
    """A recipe path as given (relative to the working directory), else one of the recipes shipped with the package
    (`nano2 run tiny.yaml` or `nano2 run tiny` from anywhere)."""
    if recipe.exists():
        return recipe.resolve()
    shipped = REPO / "recipes"
    for candidate in (shipped / recipe.name, shipped / f"{recipe.name}.yaml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in shipped.glob("*.yaml")))
    raise Nano2Error(f"{recipe}: no such recipe file (shipped recipes: {known})")


def run_command(
    recipe: Path = typer.Argument(DEFAULT_RECIPE, help="Recipe file or a shipped recipe's name (default: tiny)."),
    only: list[str] = typer.Option([], "--only", help="Run only these stages (forced)."),
    start: str | None = typer.Option(None, "--from", help="Re-run from this stage on (forced), in recipe order."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Override the recipe's run_dir."),
    list_stages: bool = typer.Option(False, "--list", help="List the stages and their cache status, run nothing."),
    jobs: int = typer.Option(
        os.cpu_count() or 1, "-j", "--jobs", min=1, help="Stages run at once (default: the number of cores)."
    ),
    verify: bool = typer.Option(False, "--verify", help="Check cached outputs' content hashes, not only sizes."),
) -> None:
    """Run RECIPE's stages in dependency order, several at once; finished stages whose inputs, config and code are
    unchanged (and whose outputs check out) are skipped, interrupted ones resume."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from nano2.console import make_console

    console = make_console()
    recipe = resolve_recipe_path(recipe)
    parsed = load_recipe(recipe)
    runner = Runner(parsed, recipe, run_dir, verify=verify)
    if list_stages:
        table = Table(title=f"{parsed.name}: {runner.run_dir}", title_justify="left")
        for col in ("stage", "after", "cached", "last status", "seconds", "what"):
            table.add_column(col)
        for stage in parsed.stages:
            runner.fingerprints[stage.name] = fp = runner.fingerprint(stage)
            state = runner.read_state(stage)
            problem = runner.cache_problem(stage, state, fp)
            table.add_row(
                stage.name,
                ", ".join(stage.after),
                "yes" if problem is None else "no",
                runner.status_now(stage),
                f"{state.get('seconds', 0):.1f}" if state else "",
                stage.help,
            )
        console.print(table)
        return
    selected = runner.plan(only, start)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn())
    columns += (TextColumn("{task.completed}/{task.total}"),)
    active: list[str] = []
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as progress:
        overall = progress.add_task(f"recipe {parsed.name}", total=len(selected))

        def on_event(kind: str, stage: StageSpec, result: StageResult | None) -> None:
            if kind == "start":
                active.append(stage.name)
            else:
                assert result is not None
                active.remove(stage.name)
                progress.advance(overall)
                colour = {"ran": "green", "skipped": "dim", "failed": "red", "missing-input": "yellow"}[result.status]
                extra = f" ({result.note})" if result.note and result.status != "skipped" else ""
                line = f"[{colour}]{result.status:>13}[/] {stage.name} {result.seconds:7.1f} s{extra}"
                progress.console.print(line)
            progress.update(overall, description=f"recipe {parsed.name}: {', '.join(active) or '-'}")

        results = runner.run(only=only or None, start=start, on_event=on_event, jobs=jobs)
    ran = sum(r.status == "ran" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    total = sum(r.seconds for r in results if r.status == "ran")
    console.print(f"[bold]{parsed.name}[/]: {ran} stages ran ({total:.0f} s of stage time), {skipped} cached")
    console.print(f"run dir: {runner.run_dir}")


COMMAND = run_command  # mounted by nano2/app/cli.py as `nano2 run`
