"""What a pretraining run starts from: the plan, the token directories of its sources, and the model.

Each is checked against the others before the first step (the shards' tokenizer against the checkpoint's, token ids
against the vocabulary), and every error names the config file and field to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mixtures.plan import Plan, read_plan
from nano2.errors import ConfigError, Nano2Error
from nano2.manifest import InputRef, TokensExtra, find_manifest, input_ref, recorded_path
from train.config import TrainConfig


def resolve_plan(cfg: TrainConfig, config_path: str | Path | None) -> tuple[Plan, Path]:
    """The plan to train on and the file it came from: the plan JSON, or the spec compiled now by mixtures/ (with
    `data.total_tokens` replacing the spec's budget when given)."""
    from pydantic import ValidationError

    from mixtures import PlanError, compile_spec
    from mixtures.spec import MixtureSpec, load_spec
    from nano2.config import describe_validation_error

    data = cfg.data
    if data.plan is not None:
        return read_plan(data.plan), data.plan
    assert data.spec is not None
    spec = load_spec(data.spec)
    if data.total_tokens is not None:
        try:
            spec = MixtureSpec.model_validate({**spec.model_dump(), "total_tokens": data.total_tokens})
        except ValidationError as exc:
            message = describe_validation_error(exc, MixtureSpec)[0][1]
            raise ConfigError(config_path, "data.total_tokens", message) from None
    try:
        return compile_spec(spec, data.data_root, data.spec)[1], data.spec
    except PlanError as exc:
        where = f"{data.spec} (budget data.total_tokens {data.total_tokens:,})" if data.total_tokens else data.spec
        raise ConfigError(where, None, str(exc)) from exc


def resolve_source_dirs(plan: Plan, cfg: TrainConfig, config_path: str | Path | None) -> dict[str, Path]:
    """Token directory of every source the plan reads: `data.sources`, else the path the plan counted it at."""
    from mixtures.sources import resolve_source_path

    known = {s.name for s in plan.sources}
    unknown = sorted(set(cfg.data.sources) - known)
    if unknown:
        raise ConfigError(config_path, f"data.sources.{unknown[0]}", f"the plan has no source {unknown[0]!r}")
    dirs = {}
    for s in plan.sources:
        if s.planned_tokens == 0:
            continue
        path = cfg.data.sources.get(s.name) or (s.origin if s.origin != "declared" else None)
        if path is None:
            raise ConfigError(
                config_path,
                f"data.sources.{s.name}",
                "this source's tokens are declared in the spec; map it to its token directory under data_root",
            )
        dirs[s.name] = resolve_source_path(cfg.data.data_root, path)
    return dirs


def source_inputs(source_dirs: dict[str, Path]) -> list[InputRef]:
    """Manifest references of the token directories (one per directory), for the final checkpoint's manifest."""
    refs, seen = [], set()
    for directory in source_dirs.values():
        found = find_manifest(directory)
        key = str(directory)
        if key in seen:
            continue
        seen.add(key)
        refs.append(InputRef(path=recorded_path(directory), manifest_id=found[1].id) if found else input_ref(directory))
    return refs


def check_tokenizer(
    source_dirs: dict[str, Path], vocab_size: int, tokenizer_dir: Path | None, config_path: str | Path | None
) -> None:
    """Token ids must fit the model, and the shards must come from the tokenizer the checkpoint will carry."""
    from nano2.manifest import hash_file

    tok_hash = None
    if tokenizer_dir is not None:
        tok_file = tokenizer_dir / "tokenizer.json" if tokenizer_dir.is_dir() else tokenizer_dir
        if not tok_file.exists():
            raise ConfigError(config_path, "tokenizer", f"no tokenizer.json at {tokenizer_dir}")
        tok_hash = hash_file(tok_file)
    for name, directory in source_dirs.items():
        found = find_manifest(directory)
        extra = found[1].typed_extra() if found else None
        info = extra.tokenizer if isinstance(extra, TokensExtra) else None
        if info is None:
            continue
        if info.vocab_size > vocab_size:
            raise ConfigError(
                config_path,
                "data",
                f"source {name!r} was tokenized with {info.vocab_size:,} ids; the model's vocab is {vocab_size:,}",
            )
        if tok_hash and info.sha256 != tok_hash:
            raise ConfigError(
                config_path, "tokenizer", f"source {name!r} was tokenized with another tokenizer ({info.path})"
            )


def build_or_load_model(cfg: TrainConfig, config_path: str | Path | None) -> tuple[torch.nn.Module, Any, Path | None]:
    """(model, its HybridConfig, the tokenizer dir to ship with checkpoints) from `cfg.model`."""
    from model.io import build_model, load_checkpoint, load_config, quiet_transformers

    quiet_transformers()
    if cfg.model is None:
        raise ConfigError(config_path, "model", "required field is missing (no model was passed in either)")
    if cfg.model.name is not None:
        from model.configs import get_config

        try:
            hybrid = get_config(cfg.model.name)
        except Nano2Error as exc:
            raise ConfigError(config_path, "model.name", str(exc)) from None
        model = build_model(hybrid, seed=cfg.model.seed)
        tokenizer = cfg.tokenizer
    else:
        assert cfg.model.init_from is not None
        model = load_checkpoint(cfg.model.init_from)
        hybrid = load_config(cfg.model.init_from)
        own = cfg.model.init_from / "tokenizer.json"
        tokenizer = cfg.tokenizer or (cfg.model.init_from if own.exists() else None)
    return model, hybrid, tokenizer


def given_model_config(model: torch.nn.Module, cfg: TrainConfig) -> tuple[Any, Path | None]:
    """(HybridConfig, tokenizer dir) of a model passed in by the caller (e.g. compress/'s pruned student)."""
    from model.configs import from_hf_config

    return from_hf_config(model.config, name=cfg.name), cfg.tokenizer
