"""`nano2 run RECIPE`: the whole recipe as an ordered list of stages, each cached by a fingerprint.

A recipe (recipes/tiny.yaml, recipes/nano2.yaml) lists stages. A stage is one `nano2 ...` command (run in a
subprocess, so a crash or an out-of-memory kill stops that stage only), optionally with a config file that the
runner copies into the run with `overrides` applied (dotted keys), so one recipe file holds every knob that differs
from the package defaults.

Why fingerprints: a stage is skipped when its fingerprint matches the one recorded after its last successful run
and its outputs still exist. The fingerprint hashes the stage as declared, its resolved config, the content of
the files it `watches`, the code of the packages its command runs, and the fingerprints of the stages it comes
`after`. So editing a mixture weight changes only the plan stage's config, and only the plan and what depends on
it run again; curation and synthesis are reused.

State lives in `<run_dir>/.recipe/` (a dot folder, so `nano2 audit` does not read it as data): one JSON file per
stage (fingerprint, status, seconds, command, log) and one log file per stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nano2.config import load_yaml_model, read_yaml, validate_model
from nano2.contracts.shards import RUN_STATE_DIR
from nano2.errors import ConfigError, Nano2Error

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO / "recipes" / "tiny.yaml"
STATE_DIR = RUN_STATE_DIR

# The packages (and the ground floor's contracts) whose source a `nano2 <command>` runs: their code is part of a
# stage's fingerprint.
COMMAND_PACKAGES: dict[str, tuple[str, ...]] = {
    "curate": ("curation", "nano2/contracts"),
    "synth": ("synthetic", "model", "verify", "nano2/contracts"),
    "mix": ("mixtures", "nano2/contracts"),
    "model": ("model", "nano2/contracts"),
    "train": ("train", "model", "mixtures", "verify", "nano2/contracts"),
    "compress": ("compress", "train", "model", "mixtures", "verify", "nano2/contracts"),
    "eval": ("evals", "model", "synthetic", "verify", "nano2/contracts"),
    "report": ("nano2",),
    "audit": ("nano2",),
}


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

    @field_validator("run")
    @classmethod
    def _known_command(cls, run: list[str]) -> list[str]:
        if run[0] not in COMMAND_PACKAGES:
            raise ValueError(f"unknown nano2 command {run[0]!r}; expected one of {', '.join(COMMAND_PACKAGES)}")
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


def package_code_hash(packages: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for package in packages:
        root = REPO / package
        for f in sorted(root.rglob("*")):
            if f.is_file() and f.suffix in (".py", ".yaml", ".sql", ".txt", ".json") and "__pycache__" not in f.parts:
                digest.update(str(f.relative_to(REPO)).encode())
                digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------- runner


@dataclass
class StageResult:
    name: str
    status: str  # "ran", "skipped", "failed", "missing-input", "not-selected"
    seconds: float = 0.0
    note: str = ""


class Runner:
    """Runs a recipe's stages in order with caching; `run()` returns one result per stage."""

    def __init__(self, recipe: Recipe, recipe_path: Path, run_dir: Path | None = None, python: str | None = None):
        self.recipe = recipe
        self.recipe_path = recipe_path
        self.run_dir = (run_dir or Path(fill(recipe.run_dir, self._base_values(), "run_dir"))).resolve()
        self.state_dir = self.run_dir / STATE_DIR
        self.python = python or sys.executable
        self.fingerprints: dict[str, str] = {}

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
        digest = hashlib.sha256()
        values = self.values(stage)
        body = {
            "stage": stage.model_dump(mode="json", exclude={"help"}),
            "command": fill_any(stage.run, values, stage.name),
            "config": self.resolved_config(stage),
            "after": {dep: self.fingerprints.get(dep) for dep in stage.after},
            "code": package_code_hash(COMMAND_PACKAGES[stage.run[0]]),
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
            state = self.read_state(stage) or {}
            cached = (
                state.get("status") == "done"
                and state.get("fingerprint") == fingerprint
                and all(p.exists() for p in self.outputs(stage))
            )
            out[stage.name] = not cached and not self.missing_requirements(stage)
        return out

    def run(
        self,
        only: list[str] | None = None,
        start: str | None = None,
        on_event: Callable[[str, StageSpec, StageResult | None], None] | None = None,
    ) -> list[StageResult]:
        selected = self.plan(only, start)
        results: list[StageResult] = []
        started = time.time()
        for stage in self.recipe.stages:
            # Fingerprints of unselected stages still feed their dependants' fingerprints.
            self.fingerprints[stage.name] = self.fingerprint(stage)
            if stage.name not in selected:
                results.append(StageResult(stage.name, "not-selected"))
                continue
            if on_event:
                on_event("start", stage, None)
            result = self.run_stage(stage, mode=selected[stage.name])
            results.append(result)
            if on_event:
                on_event("end", stage, result)
            self._write_run_summary(results, started, finished=False)
            if result.status == "failed":
                self._write_run_summary(results, started, failed=stage.name)
                raise Nano2Error(result.note)
        self._write_run_summary(results, started)
        return results

    def run_stage(self, stage: StageSpec, mode: str = "cache") -> StageResult:
        fingerprint = self.fingerprints.get(stage.name) or self.fingerprint(stage)
        state = self.read_state(stage)
        outputs = self.outputs(stage)
        missing = self.missing_requirements(stage)
        if missing:
            note = "input not present: " + ", ".join(str(p) for p in missing) + "; continuing without this stage"
            self._write_state(stage, fingerprint, "missing-input", 0.0, note=note)
            return StageResult(stage.name, "missing-input", note=note)
        finished = state is not None and state.get("status") == "done" and all(p.exists() for p in outputs)
        if finished and mode == "reuse":
            return StageResult(stage.name, "skipped", state.get("seconds", 0.0), note="reused (before --from)")
        if finished and mode == "cache" and state.get("fingerprint") == fingerprint:
            return StageResult(stage.name, "skipped", state.get("seconds", 0.0), note="cached")
        for path in outputs:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        config = self.resolved_config(stage)
        if config is not None:
            path = self.config_path(stage)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(config, sort_keys=False))
        log = self.log_path(stage)
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command(stage)
        env = {
            **os.environ,
            **fill_any(self.recipe.env, self.values(stage), "env"),
            "NANO2_RUN_DIR": str(self.run_dir),
            "NANO2_SHARED_DATA": str(shared_data_dir()),
        }
        self._write_state(stage, fingerprint, "running", 0.0, command=cmd)
        t0 = time.time()
        with log.open("w") as out:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        seconds = time.time() - t0
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            note = f"stage {stage.name} failed (exit {proc.returncode}) after {seconds:.0f} s; log: {log}; "
            note += " | ".join(tail)
            self._write_state(stage, fingerprint, "failed", seconds, command=cmd, note=note)
            return StageResult(stage.name, "failed", seconds, note=note)
        absent = [str(p) for p in outputs if not p.exists()]
        if absent:
            note = f"stage {stage.name} exited 0 but did not write {', '.join(absent)}; log: {log}"
            self._write_state(stage, fingerprint, "failed", seconds, command=cmd, note=note)
            return StageResult(stage.name, "failed", seconds, note=note)
        self._write_state(stage, fingerprint, "done", seconds, command=cmd)
        return StageResult(stage.name, "ran", seconds)

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
        path.write_text(json.dumps(body, indent=2) + "\n")

    def _write_run_summary(
        self, results: list[StageResult], started: float, failed: str | None = None, finished: bool = True
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
            "stages": [r.__dict__ for r in results]
            + [{"name": s.name, "status": "pending"} for s in self.recipe.stages[len(results) :]],
        }
        (self.state_dir / "last_run.json").write_text(json.dumps(body, indent=2) + "\n")


# --------------------------------------------------------------------------------------------------- CLI


def run_command(
    recipe: Path = typer.Argument(DEFAULT_RECIPE, help="Recipe file (default: recipes/tiny.yaml)."),
    only: list[str] = typer.Option([], "--only", help="Run only these stages (forced)."),
    start: str | None = typer.Option(None, "--from", help="Re-run from this stage on (forced), in recipe order."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Override the recipe's run_dir."),
    list_stages: bool = typer.Option(False, "--list", help="List the stages and their cache status, run nothing."),
) -> None:
    """Run RECIPE's stages in order; finished stages whose inputs, config and code are unchanged are skipped."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from nano2.console import make_console

    console = make_console()
    parsed = load_recipe(recipe)
    runner = Runner(parsed, recipe.resolve(), run_dir)
    if list_stages:
        table = Table(title=f"{parsed.name}: {runner.run_dir}", title_justify="left")
        for col in ("stage", "after", "cached", "last status", "seconds", "what"):
            table.add_column(col)
        for stage in parsed.stages:
            runner.fingerprints[stage.name] = fp = runner.fingerprint(stage)
            state = runner.read_state(stage) or {}
            cached = state.get("status") == "done" and state.get("fingerprint") == fp
            table.add_row(
                stage.name,
                ", ".join(stage.after),
                "yes" if cached else "no",
                state.get("status", "-"),
                f"{state.get('seconds', 0):.1f}" if state else "",
                stage.help,
            )
        console.print(table)
        return
    selected = runner.plan(only, start)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn())
    columns += (TextColumn("{task.completed}/{task.total}"),)
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as progress:
        overall = progress.add_task(f"recipe {parsed.name}", total=len(selected))

        def on_event(kind: str, stage: StageSpec, result: StageResult | None) -> None:
            if kind == "start":
                progress.update(overall, description=f"recipe {parsed.name}: {stage.name}")
                return
            assert result is not None
            progress.advance(overall)
            colour = {"ran": "green", "skipped": "dim", "failed": "red", "missing-input": "yellow"}[result.status]
            extra = f" ({result.note})" if result.note and result.status != "skipped" else ""
            progress.console.print(f"[{colour}]{result.status:>13}[/] {stage.name} {result.seconds:7.1f} s{extra}")

        results = runner.run(only=only or None, start=start, on_event=on_event)
    ran = sum(r.status == "ran" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    total = sum(r.seconds for r in results if r.status == "ran")
    console.print(f"[bold]{parsed.name}[/]: {ran} stages ran ({total:.0f} s), {skipped} cached")
    console.print(f"run dir: {runner.run_dir}")


COMMAND = run_command  # mounted by nano2/app/cli.py as `nano2 run`
