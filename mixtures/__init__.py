"""Declared phase mixtures compiled into exact token plans (`nano2 mix`)."""

from mixtures.compiler import InsufficientTokensError, PlanError, SourceOrigin, compile_plan
from mixtures.plan import Plan, read_plan
from mixtures.sources import resolve_sources
from mixtures.spec import MixtureSpec, load_spec

__all__ = [
    "InsufficientTokensError",
    "MixtureSpec",
    "Plan",
    "PlanError",
    "SourceOrigin",
    "compile_plan",
    "load_spec",
    "plan_from_spec_file",
    "read_plan",
    "resolve_sources",
]


def plan_from_spec_file(spec_path, data_root=".") -> Plan:
    """Load a spec file, resolve its sources under `data_root` and compile the plan."""
    spec = load_spec(spec_path)
    tokens, origins = resolve_sources(spec, data_root, spec_file=spec_path)
    return compile_plan(spec, tokens, origins)
