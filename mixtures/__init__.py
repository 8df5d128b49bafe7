"""Declared phase mixtures compiled into exact token plans (`nano2 mix`)."""

from pathlib import Path

from mixtures.compiler import InsufficientTokensError, PlanError, SourceOrigin, compile_plan
from mixtures.plan import Plan, read_plan
from mixtures.sources import resolve_sources
from mixtures.spec import MixtureSpec, load_spec
from nano2.errors import ConfigError

__all__ = [
    "InsufficientTokensError",
    "MixtureSpec",
    "Plan",
    "PlanError",
    "SourceOrigin",
    "compile_plan",
    "compile_spec_file",
    "load_spec",
    "plan_from_spec_file",
    "read_plan",
    "resolve_sources",
]


def compile_spec_file(spec_path: str | Path, data_root: str | Path = ".") -> tuple[MixtureSpec, Plan]:
    """Load a spec file, resolve its sources under `data_root` and compile it; errors name the file."""
    spec = load_spec(spec_path)
    tokens, origins = resolve_sources(spec, data_root, spec_file=spec_path)
    try:
        return spec, compile_plan(spec, tokens, origins)
    except PlanError as exc:
        raise ConfigError(spec_path, None, str(exc)) from exc


def plan_from_spec_file(spec_path: str | Path, data_root: str | Path = ".") -> Plan:
    """The compiled plan of a spec file (see `compile_spec_file`)."""
    return compile_spec_file(spec_path, data_root)[1]
