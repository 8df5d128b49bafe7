"""Resolve the available tokens of each source: declared in the spec, or read from a manifest at its path.

A path names an artifact directory (its manifest's total `tokens`) or a hive-style partition inside one,
e.g. `web/subset=high`, whose count is the manifest's `stats.by.subset.high.tokens`. Paths are relative to the
data root (`--data-root`, default the current directory).
"""

from __future__ import annotations

from pathlib import Path

from mixtures.compiler import SourceOrigin
from mixtures.spec import MixtureSpec
from nano2.errors import ConfigError
from nano2.manifest import MANIFEST_NAME, find_manifest


def resolve_source_path(data_root: str | Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(data_root) / p


def read_source_tokens(
    data_root: str | Path, path: str, spec_file: str | Path | None = None, field: str | None = None
) -> tuple[int, str]:
    """Available tokens at `path` (an artifact or a key=value partition of one) and the manifest id they came from."""
    data_root = Path(data_root)
    target = resolve_source_path(data_root, path)
    found = find_manifest(target, stop_at=data_root if not Path(path).is_absolute() else None)
    if found is None:
        raise ConfigError(
            spec_file, field, f"missing manifest: no {MANIFEST_NAME} at {target} or in an artifact directory above it"
        )
    artifact_dir, manifest = found
    try:
        parts = target.resolve().relative_to(artifact_dir).parts
    except ValueError:
        parts = ()
    if not parts:
        if manifest.stats.tokens is None:
            raise ConfigError(spec_file, field, f"{artifact_dir / MANIFEST_NAME} records no token count (stats.tokens)")
        return manifest.stats.tokens, manifest.id
    if len(parts) != 1 or "=" not in parts[0]:
        raise ConfigError(
            spec_file,
            field,
            f"missing manifest: {target} has no {MANIFEST_NAME}, and {'/'.join(parts)} below {artifact_dir} "
            "is not a single key=value partition of that artifact",
        )
    key, value = parts[0].split("=", 1)
    group = manifest.stats.by.get(key, {}).get(value)
    if group is None or group.tokens is None:
        known = ", ".join(f"{key}={v}" for v in sorted(manifest.stats.by.get(key, {}))) or "none"
        raise ConfigError(
            spec_file,
            field,
            f"{artifact_dir / MANIFEST_NAME} has no token count for {key}={value} (partitions it records: {known})",
        )
    return group.tokens, manifest.id


def resolve_sources(
    spec: MixtureSpec, data_root: str | Path = ".", spec_file: str | Path | None = None
) -> tuple[dict[str, int], dict[str, SourceOrigin]]:
    """Available tokens and their origin for every source of a spec."""
    root = Path(data_root)
    tokens: dict[str, int] = {}
    origins: dict[str, SourceOrigin] = {}
    for name, source in spec.sources.items():
        if source.tokens is not None:
            tokens[name], origins[name] = source.tokens, SourceOrigin()
        else:
            assert source.path is not None
            try:
                count, manifest_id = read_source_tokens(root, source.path, spec_file, f"sources.{name}.path")
            except ConfigError:
                if not source.optional:
                    raise
                count, manifest_id = 0, None  # an optional source that is not there: left out by the compiler
            tokens[name], origins[name] = count, SourceOrigin(origin=source.path, manifest_id=manifest_id)
    return tokens, origins
