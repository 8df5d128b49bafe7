"""Training checkpoints: a loadable model checkpoint plus everything needed to resume exactly.

Layout of `RUN/checkpoints/step-00000050/` (50 optimizer steps done):
- the model as `model.io.save_checkpoint` writes it (config.json, safetensors, tokenizer files, a `checkpoint`
  manifest), so any intermediate checkpoint loads with `load_checkpoint` or vLLM;
- `train_state/` (its own `train-state` manifest): `optimizer.safetensors` (AdamW moments by parameter name, from
  the full, unsharded optimizer state dict, so a run may resume under a different data-parallel layout),
  `rng.safetensors` (every rank's torch RNG states) and `state.json` (step, loader state, param groups).
A checkpoint is written under a temporary name and renamed when complete: a killed run never leaves a partial
checkpoint that resume could pick.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nano2.errors import Nano2Error
from nano2.manifest import ArtifactKind, current_command, write_manifest

CHECKPOINTS = "checkpoints"
STATE_DIR = "train_state"
STEP_PREFIX = "step-"


def step_dir(run_dir: Path, steps_done: int) -> Path:
    return run_dir / CHECKPOINTS / f"{STEP_PREFIX}{steps_done:08d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        if path.name.startswith(STEP_PREFIX) and (path / STATE_DIR / "state.json").exists():
            found.append((int(path.name.removeprefix(STEP_PREFIX)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def optimizer_to_tensors(optim_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """A full optimizer state dict (keyed by parameter name) as flat tensors + JSON-able param groups."""
    tensors: dict[str, torch.Tensor] = {}
    for fqn, state in optim_state["state"].items():
        for key, value in state.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{fqn}::{key}"] = tensor.detach().cpu().contiguous()
    return tensors, optim_state["param_groups"]


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], param_groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        fqn, key = name.rsplit("::", 1)
        state.setdefault(fqn, {})[key] = tensor
    return {"state": state, "param_groups": param_groups}


def save_train_state(
    directory: Path,
    steps_done: int,
    optim_state: dict[str, Any],
    loader_state: dict[str, Any],
    rng_states: list[dict[str, torch.Tensor]],
    extra: dict[str, Any] | None = None,
) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors, groups = optimizer_to_tensors(optim_state)
    save_file(tensors, directory / "optimizer.safetensors")
    rng = {f"rank{r}.{k}": v.contiguous() for r, states in enumerate(rng_states) for k, v in states.items()}
    save_file(rng, directory / "rng.safetensors")
    state = {"step": steps_done, "loader": loader_state, "param_groups": groups, **(extra or {})}
    (directory / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    write_manifest(
        directory,
        kind=ArtifactKind.TRAIN_STATE,
        name=f"{STEP_PREFIX}{steps_done:08d}",
        command=current_command(),
        extra={"step": steps_done, "ranks": len(rng_states)},
    )


@dataclass
class ResumeState:
    steps_done: int
    path: Path
    model_state: dict[str, torch.Tensor]
    optim_state: dict[str, Any]
    loader_state: dict[str, Any]
    rng_states: list[dict[str, torch.Tensor]]
    extra: dict[str, Any]


def load_resume_state(path: Path) -> ResumeState:
    from safetensors.torch import load_file

    state_dir = path / STATE_DIR
    try:
        state = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Nano2Error(f"{state_dir}: unreadable training state ({exc})") from None
    model_state = checkpoint_state_dict(path)
    optim = optimizer_from_tensors(load_file(state_dir / "optimizer.safetensors"), state.pop("param_groups"))
    rng_flat = load_file(state_dir / "rng.safetensors")
    ranks: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in rng_flat.items():
        rank, name = key.split(".", 1)
        ranks.setdefault(int(rank.removeprefix("rank")), {})[name] = value
    rng_states = [ranks[r] for r in sorted(ranks)]
    steps = int(state.pop("step"))
    loader = state.pop("loader")
    return ResumeState(steps, path, model_state, optim, loader, rng_states, state)


def checkpoint_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint directory under the module's own parameter names.

    transformers may rename parameters on save (NemotronH writes `backbone.*` for `model.*`), so the weights are
    loaded through `from_pretrained`, which undoes that, rather than read from the safetensors files directly.
    """
    from model.io import load_checkpoint

    return load_checkpoint(path, dtype="fp32").state_dict()


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    for _, path in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def rng_state() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_state(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
