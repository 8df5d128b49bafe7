"""Declared phase mixtures compiled into exact token plans (`nano2 mix`).

`compile_spec` is the one path from a spec to its plan (sources resolved, empty optional sources left out, then
`compiler.compile_plan`): `nano2 mix`, train/ and compress/ all compile through it."""

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
    "compile_spec",
    "compile_spec_file",
    "left_out_sources",
    "load_spec",
    "read_plan",
    "resolve_sources",
    "without_empty_optional_sources",
]


def compile_spec(
    spec: MixtureSpec, data_root: str | Path = ".", spec_path: str | Path | None = None
) -> tuple[MixtureSpec, Plan]:
    """Resolve a spec's sources under `data_root` and compile it: the one path from a spec to its plan.

    Optional sources with no tokens are left out first (the returned spec is the one compiled). Source errors name
    `spec_path`; a PlanError is left to the caller, which knows what budget it asked for."""
    tokens, origins = resolve_sources(spec, data_root, spec_file=spec_path)
    spec = without_empty_optional_sources(spec, tokens, spec_path)
    tokens = {name: n for name, n in tokens.items() if name in spec.sources}
    origins = {name: o for name, o in origins.items() if name in spec.sources}
    return spec, compile_plan(spec, tokens, origins)


def compile_spec_file(spec_path: str | Path, data_root: str | Path = ".") -> tuple[MixtureSpec, Plan]:
    """Load a spec file and compile it (`compile_spec`); every error names the file."""
    spec = load_spec(spec_path)
    try:
        return compile_spec(spec, data_root, spec_path)
    except PlanError as exc:
        raise ConfigError(spec_path, None, str(exc)) from exc


def without_empty_optional_sources(spec: MixtureSpec, tokens: dict[str, int], spec_path=None) -> MixtureSpec:
    """The spec without its optional sources that have no tokens; each phase's other weights keep their ratios
    (the compiler allocates weight / sum(weights))."""
    empty = {name for name, source in spec.sources.items() if source.optional and tokens.get(name, 0) == 0}
    if not empty:
        return spec
    phases = []
    for phase in spec.phases:
        weights = {name: w for name, w in phase.weights.items() if name not in empty}
        if not any(weights.values()):
            raise ConfigError(
                spec_path, f"phases.{phase.name}", f"only empty optional sources ({', '.join(sorted(empty))})"
            )
        phases.append(phase.model_copy(update={"weights": weights}))
    sources = {name: s for name, s in spec.sources.items() if name not in empty}
    return spec.model_copy(update={"sources": sources, "phases": phases})


def left_out_sources(spec_path: str | Path, compiled: MixtureSpec) -> list[str]:
    """Names of the spec file's sources that the compiled spec left out (optional and empty)."""
    return sorted(set(load_spec(spec_path).sources) - set(compiled.sources))
