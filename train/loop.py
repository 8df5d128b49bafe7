"""The pretraining loop (`nano2 train pretrain`, long-context CPT, and distillation through `loss_fn`).

One readable loop: the mixture loader deals each step's global batch exactly as the plan says, the batch is split
over data-parallel ranks and micro-batches (gradient accumulation to the global batch), AdamW steps with the
schedule's rate, and every N steps a checkpoint saves the model, the optimizer, the loader and the RNG state, so
`--resume` reproduces an uninterrupted run's losses exactly.

Stable interface (compress/ distillation builds on it):

    run_training(cfg: TrainConfig, *, model: torch.nn.Module | None = None, loss_fn: LossFn | None = None,
                 out_dir: str | Path | None = None, config_path: str | Path | None = None, resume: bool = False,
                 stop_at_step: int | None = None, progress: bool = True) -> TrainResult

    LossFn = Callable[[torch.nn.Module, torch.LongTensor, torch.LongTensor], tuple[torch.Tensor, dict[str, float]]]
    loss_fn(model, input_ids[B, T], labels[B, T]) -> (loss, metrics)

- `model` (optional) replaces `cfg.model`: a transformers causal LM (it is saved with `save_pretrained`), e.g. a
  pruned student. It is moved to the run's device and wrapped for data parallelism.
- `loss_fn` replaces next-token cross-entropy. It receives the module to call (DDP/FSDP-wrapped when distributed:
  call it, do not unwrap it), a micro-batch of `input_ids`, and `labels` aligned with them: `labels[:, t]` is the
  token that follows `input_ids[:, t]`, -100 where there is none (the last position). It runs under the configured
  autocast and returns the micro-batch's mean loss (a scalar tensor to backpropagate) and a dict of floats (or
  0-d tensors), the same keys on every call; their mean over micro-batches and ranks is logged in metrics.jsonl.
  A teacher can live in the closure (`torch.no_grad()` around its forward).
- `out_dir` overrides `cfg.output_dir`; `resume` continues from the run's latest checkpoint; `stop_at_step` ends the
  process after that many optimizer steps (as a preempted job would) without writing the final checkpoint.

A finished run directory is itself a model checkpoint (`load_checkpoint(out_dir)`) whose `checkpoint` manifest
records the plan, the token shards, the train config and the realised tokens per source per phase; beside it are
`plan.json`, `metrics.jsonl`, `loss.png` and `checkpoints/step-*`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mixtures.plan import Plan, read_plan
from nano2.console import make_console
from nano2.errors import ConfigError, Nano2Error
from nano2.manifest import MANIFEST_NAME, InputRef, find_manifest, input_ref, read_manifest
from train.checkpoint import (
    STATE_DIR,
    ResumeState,
    latest_checkpoint,
    load_resume_state,
    prune_checkpoints,
    rng_state,
    save_train_state,
    set_rng_state,
    step_dir,
)
from train.config import TrainConfig
from train.data import IGNORE_INDEX, MixtureLoader, plan_fingerprint

LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]
METRICS = "metrics.jsonl"
PLAN = "plan.json"
LOSS_PNG = "loss.png"


def next_token_loss(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor):
    """The default loss: mean next-token cross-entropy over the positions that have a target."""
    logits = model(input_ids=input_ids, use_cache=False).logits
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX)
    return loss, {}


@dataclass
class TrainResult:
    out_dir: Path
    steps_done: int
    total_steps: int
    completed: bool
    losses: list[float] = field(default_factory=list)  # every logged step of the run so far (rank 0)
    realised: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ distributed


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Mean over ranks of a small CPU tensor (moved to the device for NCCL, which cannot reduce CPU tensors)."""
        if self.enabled:
            values = values.to(self.device)
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
            values = values.cpu() / self.world_size
        return values


def setup_distributed(cfg: TrainConfig) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1; choose the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise Nano2Error("device: cuda was asked for but no GPU is visible")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world == 1:
        return Dist(device=device)
    dist = torch.distributed
    owns = not dist.is_initialized()
    if owns:
        backend = cfg.parallel.backend if cfg.parallel.backend != "auto" else ("nccl" if use_cuda else "gloo")
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device, owns)


# ------------------------------------------------------------------------------------------------ data


def resolve_plan(cfg: TrainConfig, config_path: str | Path | None) -> tuple[Plan, Path]:
    """The plan to train on and the file it came from (the plan JSON, or the spec compiled now)."""
    data = cfg.data
    if data.plan is not None:
        return read_plan(data.plan), data.plan
    from pydantic import ValidationError

    from mixtures import without_empty_optional_sources
    from mixtures.compiler import PlanError, compile_plan
    from mixtures.sources import resolve_sources
    from mixtures.spec import MixtureSpec, load_spec
    from nano2.config import describe_validation_error

    assert data.spec is not None
    spec = load_spec(data.spec)
    if data.total_tokens is not None:
        try:
            spec = MixtureSpec.model_validate({**spec.model_dump(), "total_tokens": data.total_tokens})
        except ValidationError as exc:
            message = describe_validation_error(exc, MixtureSpec)[0][1]
            raise ConfigError(config_path, "data.total_tokens", message) from None
    tokens, origins = resolve_sources(spec, data.data_root, spec_file=data.spec)
    spec = without_empty_optional_sources(spec, tokens, data.spec)
    tokens = {name: n for name, n in tokens.items() if name in spec.sources}
    origins = {name: o for name, o in origins.items() if name in spec.sources}
    try:
        return compile_plan(spec, tokens, origins), data.spec
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


def _source_inputs(source_dirs: dict[str, Path]) -> list[InputRef]:
    refs, seen = [], set()
    for directory in source_dirs.values():
        found = find_manifest(directory)
        key = str(directory)
        if key in seen:
            continue
        seen.add(key)
        refs.append(InputRef(path=key, manifest_id=found[1].id) if found else input_ref(directory))
    return refs


def _check_tokenizer(source_dirs: dict[str, Path], vocab_size: int, tokenizer_dir: Path | None, where) -> None:
    """Token ids must fit the model, and the shards must come from the tokenizer the checkpoint will carry."""
    from nano2.manifest import hash_file

    tok_hash = None
    if tokenizer_dir is not None:
        tok_file = tokenizer_dir / "tokenizer.json" if tokenizer_dir.is_dir() else tokenizer_dir
        if not tok_file.exists():
            raise ConfigError(where, "tokenizer", f"no tokenizer.json at {tokenizer_dir}")
        tok_hash = hash_file(tok_file)
    for name, directory in source_dirs.items():
        found = find_manifest(directory)
        info = (found[1].extra.get("tokenizer") if found else None) or {}
        if info.get("vocab_size") and info["vocab_size"] > vocab_size:
            raise ConfigError(
                where,
                "data",
                f"source {name!r} was tokenized with {info['vocab_size']:,} ids; the model's vocab is {vocab_size:,}",
            )
        if tok_hash and info.get("sha256") and info["sha256"] != tok_hash:
            raise ConfigError(
                where, "tokenizer", f"source {name!r} was tokenized with another tokenizer ({info['path']})"
            )


# ------------------------------------------------------------------------------------------------ model


def _blocks(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The repeated blocks (transformers' `_no_split_modules`), in order: FSDP units and FP8 layer boundaries."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ in names]


def build_or_load_model(cfg: TrainConfig, where) -> tuple[torch.nn.Module, Any, Path | None]:
    """(model, its HybridConfig, the tokenizer dir to ship with checkpoints)."""
    from model.io import build_model, load_checkpoint, load_config, quiet_transformers

    quiet_transformers()
    if cfg.model is None:
        raise ConfigError(where, "model", "required field is missing (no model was passed in either)")
    if cfg.model.name is not None:
        from model.configs import get_config

        try:
            hybrid = get_config(cfg.model.name)
        except Nano2Error as exc:
            raise ConfigError(where, "model.name", str(exc)) from None
        model = build_model(hybrid, seed=cfg.model.seed)
        tokenizer = cfg.tokenizer
    else:
        assert cfg.model.init_from is not None
        model = load_checkpoint(cfg.model.init_from)
        hybrid = load_config(cfg.model.init_from)
        own = cfg.model.init_from / "tokenizer.json"
        tokenizer = cfg.tokenizer or (cfg.model.init_from if own.exists() else None)
    return model, hybrid, tokenizer


def apply_fp8(model: torch.nn.Module, cfg: TrainConfig, device: torch.device, console) -> bool:
    """Swap Linear layers for torchao Float8Linear, keeping the first/last blocks and lm_head in bf16 (GPU only)."""
    fp8 = cfg.precision.fp8
    if not fp8.enabled:
        return False
    if device.type != "cuda":
        console.print("[yellow]fp8[/]: skipped on CPU (torchao's float8 matmuls need an FP8-capable GPU)")
        return False
    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError:
        raise Nano2Error("precision.fp8 needs torchao on the GPU machine: pip install 'nano2-recipe[gpu]'") from None
    blocks = [name for name, _ in _blocks(model)]
    keep = blocks[: fp8.bf16_first_layers] + (
        blocks[len(blocks) - fp8.bf16_last_layers :] if fp8.bf16_last_layers else []
    )

    def use_fp8(module: torch.nn.Module, fqn: str) -> bool:
        if not isinstance(module, torch.nn.Linear) or fqn.endswith("lm_head"):
            return False
        if any(fqn == k or fqn.startswith(k + ".") for k in keep):
            return False
        return module.in_features % 16 == 0 and module.out_features % 16 == 0

    convert_to_float8_training(model, config=Float8LinearConfig.from_recipe_name(fp8.recipe), module_filter_fn=use_fp8)
    console.print(f"fp8 ({fp8.recipe}): on, bf16 kept in {', '.join(keep) or 'no blocks'} and lm_head")
    return True


def wrap_model(model: torch.nn.Module, cfg: TrainConfig, dist: Dist) -> torch.nn.Module:
    if not dist.enabled:
        return model
    if cfg.parallel.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    from torch.distributed.fsdp import fully_shard

    for _, block in _blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (embeddings, projections, conv filters)."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    opt = cfg.optimizer
    groups = [
        {"params": decay, "weight_decay": opt.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=opt.betas, eps=opt.eps)


def _exportable(base: torch.nn.Module, full_state: dict[str, torch.Tensor] | None) -> torch.nn.Module:
    """A plain (unsharded) copy of the model to save; the model itself when it is not sharded."""
    if full_state is None:
        return base
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        copy = AutoModelForCausalLM.from_config(base.config)
    copy.load_state_dict(full_state, assign=True, strict=True)
    return copy


# ------------------------------------------------------------------------------------------------ the loop


class _Run:
    """State shared by the steps of one `run_training` call."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, config_path, dist: Dist, console):
        self.cfg, self.out_dir, self.config_path, self.dist, self.console = cfg, out_dir, config_path, dist, console
        self.architecture = ""

    def state_dicts(self, wrapped, optimizer=None) -> tuple[dict | None, dict | None]:
        """Full model (FSDP only) and optimizer state dicts; a collective: every rank calls it."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=self.dist.enabled)
        fsdp = self.dist.enabled and self.cfg.parallel.strategy == "fsdp2"
        model_state = get_model_state_dict(wrapped, options=options) if fsdp else None
        optim_state = get_optimizer_state_dict(wrapped, optimizer, options=options) if optimizer is not None else None
        return model_state, optim_state

    def gather_rng(self) -> list[dict[str, torch.Tensor]]:
        mine = rng_state()
        if not self.dist.enabled:
            return [mine]
        out: list[Any] = [None] * self.dist.world_size
        torch.distributed.all_gather_object(out, mine)
        return out


def _finished(out_dir: Path) -> bool:
    if not (out_dir / MANIFEST_NAME).exists():
        return False
    manifest = read_manifest(out_dir)
    return manifest.kind == "checkpoint" and bool(manifest.extra.get("completed"))


def _prepare_out_dir(out_dir: Path, resume: bool) -> tuple[int, Path] | None:
    """The checkpoint to resume from (None: start at step 0); refuses to start over an existing run."""
    latest = latest_checkpoint(out_dir)
    if resume:
        return latest
    if out_dir.exists() and (latest or (out_dir / METRICS).exists() or (out_dir / MANIFEST_NAME).exists()):
        raise Nano2Error(f"{out_dir}: already holds a run; pass --resume to continue it or choose another -o")
    return None


def _write_metrics_prefix(path: Path, keep_before_step: int) -> None:
    """On resume, drop metrics of steps after the checkpoint (they are recomputed, as after a kill)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln)["step"] < keep_before_step]
    path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")


def run_training(
    cfg: TrainConfig,
    *,
    model: torch.nn.Module | None = None,
    loss_fn: LossFn | None = None,
    out_dir: str | Path | None = None,
    config_path: str | Path | None = None,
    resume: bool = False,
    stop_at_step: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train on the plan's data (see the module docstring for the interface)."""
    where = config_path
    out = Path(out_dir) if out_dir is not None else cfg.output_dir
    if out is None:
        raise ConfigError(where, "output_dir", "no output directory: set output_dir or pass -o")
    dist = setup_distributed(cfg)
    console = make_console()
    try:
        return _train(cfg, model, loss_fn or next_token_loss, out, where, resume, stop_at_step, progress, dist, console)
    finally:
        if dist.owns_group:
            torch.distributed.destroy_process_group()


def _train(cfg, model, loss_fn, out, where, resume, stop_at_step, show_progress, dist: Dist, console) -> TrainResult:
    say = console.print if dist.main else (lambda *a, **k: None)
    plan, plan_input = resolve_plan(cfg, where)
    batch, world, micro = plan.global_batch_size, dist.world_size, cfg.micro_batch_size
    if batch % (world * micro):
        raise ConfigError(
            where,
            "micro_batch_size",
            f"the global batch of {batch} sequences does not split into {world} rank(s) x micro-batches of {micro}",
        )
    accumulation = batch // (world * micro)
    try:
        schedule = cfg.schedule.build(plan.total_steps, plan.tokens_per_step)
    except ValueError as exc:
        raise ConfigError(where, "schedule", str(exc)) from None
    source_dirs = resolve_source_dirs(plan, cfg, where)
    loader = MixtureLoader(plan, source_dirs, seed=cfg.data.seed, shuffle=cfg.data.shuffle)
    latest = _prepare_out_dir(out, resume)
    if cfg.precision.fp8.enabled and not cfg.precision.bf16:
        raise ConfigError(where, "precision.bf16", "fp8 trains the layers it keeps out of FP8 in bf16: set bf16 true")

    if resume and _finished(out):
        say(f"{out}: this run is already complete; nothing to resume")
        from train.plot import read_metrics

        losses = [r["loss"] for r in read_metrics(out / METRICS)]
        return TrainResult(out, plan.total_steps, plan.total_steps, True, losses, read_realised(out))

    given_model = model is not None
    if model is None:
        model, hybrid, tokenizer_dir = build_or_load_model(cfg, where)
    else:
        from model.configs import from_hf_config

        hybrid, tokenizer_dir = from_hf_config(model.config, name=cfg.name), cfg.tokenizer
    architecture = hybrid.name
    hybrid = hybrid.with_(name=cfg.name)  # checkpoints are named after the run; the architecture goes in extra
    _check_tokenizer(source_dirs, model.config.vocab_size, tokenizer_dir, where)
    model.train()
    torch.manual_seed(cfg.seed)

    resume_state: ResumeState | None = None
    if latest is not None:
        resume_state = load_resume_state(latest[1])
        model.load_state_dict(resume_state.model_state, strict=True)
        loader.load_state_dict(resume_state.loader_state)
        if loader.state.step != resume_state.steps_done:
            raise Nano2Error(f"{latest[1]}: loader state is at step {loader.state.step}, the checkpoint at {latest[0]}")
        say(f"resuming {out} from step {resume_state.steps_done:,} ({latest[1].name})")
    elif resume:
        say(f"no checkpoint in {out}: starting from step 0")
    start = loader.state.step

    apply_fp8(model, cfg, dist.device, console if dist.main else make_console(stderr=True))
    if cfg.activation_checkpointing:
        if not hasattr(model, "activation_checkpointing_enable"):
            raise ConfigError(where, "activation_checkpointing", "the model has no activation_checkpointing_enable()")
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.to(dist.device)
    wrapped = wrap_model(model, cfg, dist)
    optimizer = make_optimizer(wrapped, cfg, schedule(start))
    if resume_state is not None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(
            wrapped, optimizer, resume_state.optim_state, options=StateDictOptions(full_state_dict=True)
        )
        states = resume_state.rng_states
        set_rng_state(states[dist.rank] if dist.rank < len(states) else states[0])

    run = _Run(cfg, out, where, dist, console)
    run.architecture = architecture
    metrics_path = out / METRICS
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / PLAN).write_text(plan.to_json(), encoding="utf-8")
        if resume_state is not None:
            _write_metrics_prefix(metrics_path, start)
        else:
            metrics_path.write_text("", encoding="utf-8")
    dist.barrier()

    end = plan.total_steps if stop_at_step is None else min(plan.total_steps, stop_at_step)
    autocast = torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=cfg.precision.bf16)
    fsdp = dist.enabled and cfg.parallel.strategy == "fsdp2"
    say(
        f"[bold]{cfg.name}[/]: plan {plan.name!r}, {plan.total_steps:,} steps x {batch} x {plan.seq_len} tokens, "
        f"phases {', '.join(f'{p.name}@{p.start_step}' for p in plan.phases)}; {world} rank(s) "
        f"({cfg.parallel.strategy if dist.enabled else 'single process'}), micro-batch {micro} x {accumulation}, "
        f"{dist.device}" + (", bf16 autocast" if cfg.precision.bf16 else "")
    )
    params = [p for p in wrapped.parameters() if p.requires_grad]
    max_norm = cfg.optimizer.grad_clip or math.inf
    started = time.perf_counter()
    progress = _ProgressWithLoss(console, show_progress and dist.main)
    task = progress.add_task(plan.phase_at_step(min(start, plan.total_steps - 1)).name, total=end, completed=start)
    phase_name = None
    with progress, open(metrics_path, "a", encoding="utf-8") if dist.main else contextlib.nullcontext() as metrics:
        for step in range(start, end):
            t0 = time.perf_counter()
            data = loader.next_batch(dist.rank, world)
            if data.phase != phase_name:
                if phase_name is not None:
                    say(f"step {step:,}: phase {data.phase} begins")
                phase_name = data.phase
            lr = schedule(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            input_ids = torch.from_numpy(data.input_ids).to(dist.device)
            labels = torch.from_numpy(data.labels()).to(dist.device)
            loss_sum = torch.zeros((), device=dist.device)
            extra_sums: dict[str, float] = {}
            for i in range(accumulation):
                rows = slice(i * micro, (i + 1) * micro)
                last = i == accumulation - 1
                if fsdp:
                    wrapped.set_requires_gradient_sync(last)
                sync = wrapped.no_sync() if dist.enabled and not fsdp and not last else contextlib.nullcontext()
                with sync:
                    with autocast:
                        loss, extras = loss_fn(wrapped, input_ids[rows], labels[rows])
                    (loss / accumulation).backward()
                loss_sum += loss.detach().float()
                for key, value in extras.items():
                    extra_sums[key] = extra_sums.get(key, 0.0) + float(value)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            keys = sorted(extra_sums)
            logged = torch.tensor([loss_sum.item(), *(extra_sums[k] for k in keys)], dtype=torch.float64)
            logged = dist.mean(logged) / accumulation
            record = {
                "step": step,
                "phase": data.phase,
                "loss": logged[0].item(),
                "lr": lr,
                "grad_norm": float(grad_norm),
                "tokens": (step + 1) * plan.tokens_per_step,
                "sequences": data.global_counts,
                **{k: logged[j + 1].item() for j, k in enumerate(keys)},
                "step_s": round(time.perf_counter() - t0, 4),
                "tokens_per_s": round(plan.tokens_per_step / max(time.perf_counter() - t0, 1e-9), 1),
            }
            if not math.isfinite(record["loss"]):
                raise Nano2Error(f"step {step}: loss is {record['loss']}; stopping (lower the LR or check the data)")
            if dist.main and ((step + 1) % cfg.log_every == 0 or step + 1 == end):
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
            progress.update(task, completed=step + 1, description=data.phase, loss=f"{record['loss']:.4f}")
            done = step + 1
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < plan.total_steps:
                _save_intermediate(run, wrapped, model, optimizer, loader, hybrid, tokenizer_dir, done)
    steps_done = loader.state.step
    elapsed = time.perf_counter() - started
    completed = steps_done == plan.total_steps
    result = TrainResult(out, steps_done, plan.total_steps, completed, realised=loader.realised_rows())
    if completed:
        model_state, _ = run.state_dicts(wrapped) if fsdp else (None, None)
        if dist.main:
            _finish(run, plan, plan_input, loader, source_dirs, model, model_state, hybrid, tokenizer_dir, given_model)
    dist.barrier()
    if dist.main:
        from train.plot import read_metrics

        result.losses = [r["loss"] for r in read_metrics(metrics_path)]
        verb = "finished" if completed else f"stopped at step {steps_done:,} of {plan.total_steps:,}"
        last = f"{result.losses[-1]:.4f}" if result.losses else "-"
        say(f"{verb}: {steps_done - start:,} steps in {elapsed:.1f}s; last loss {last}; {out}")
    return result


class _ProgressWithLoss:
    """A rich progress bar whose task carries the latest loss."""

    def __init__(self, console, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )

    def add_task(self, description: str, total: int, completed: int) -> int:
        return self.progress.add_task(description, total=total, completed=completed, loss="-")

    def update(self, task: int, **fields: Any) -> None:
        self.progress.update(task, **fields)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)


def _save_intermediate(run: _Run, wrapped, base, optimizer, loader, hybrid, tokenizer_dir, steps_done: int) -> None:
    from model.io import save_checkpoint

    model_state, optim_state = run.state_dicts(wrapped, optimizer)
    rngs = run.gather_rng()
    if run.dist.main:
        final = step_dir(run.out_dir, steps_done)
        tmp = final.with_name(f".{final.name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        save_train_state(tmp / STATE_DIR, steps_done, optim_state, loader.state_dict(), rngs)
        save_checkpoint(
            _exportable(base, model_state),
            tmp,
            hybrid,
            tokenizer_dir=tokenizer_dir,
            extra={"step": steps_done, "architecture": run.architecture},
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        prune_checkpoints(run.out_dir, run.cfg.keep_checkpoints)
    run.dist.barrier()


def _finish(
    run: _Run, plan: Plan, plan_input: Path, loader, source_dirs, base, model_state, hybrid, tokenizer_dir, given_model
) -> None:
    """Realised tokens checked against the plan, the loss plot, and the final checkpoint with its manifest."""
    from model.io import save_checkpoint
    from train.plot import plot_loss, read_metrics

    rows = loader.realised_rows()
    wrong = [r for r in rows if r["tokens"] != r["planned_tokens"]]
    if wrong:
        r = wrong[0]
        raise Nano2Error(
            f"realised tokens differ from the plan: {r['phase']}/{r['source']} {r['tokens']} != {r['planned_tokens']}"
        )
    records = read_metrics(run.out_dir / METRICS)
    if run.cfg.plot and records:
        plot_loss(records, plan, run.out_dir / LOSS_PNG, f"{run.cfg.name}: {plan.name}")
    inputs = [input_ref(plan_input), *_source_inputs(source_dirs)]
    if run.cfg.model is not None and run.cfg.model.init_from is not None and not given_model:
        inputs.append(input_ref(run.cfg.model.init_from))
    extra = {
        "run": run.cfg.name,
        "architecture": run.architecture,
        "plan": PLAN,
        "plan_name": plan.name,
        "plan_fingerprint": plan_fingerprint(plan),
        "total_steps": plan.total_steps,
        "steps_done": loader.state.step,
        "completed": True,
        "tokens_trained": loader.state.step * plan.tokens_per_step,
        "final_loss": records[-1]["loss"] if records else None,
        "world_size": run.dist.world_size,
        "train_config": run.cfg.model_dump(mode="json"),
        "realised": rows,
    }
    save_checkpoint(
        _exportable(base, model_state), run.out_dir, hybrid, tokenizer_dir=tokenizer_dir, inputs=inputs, extra=extra
    )


def read_realised(run_dir: str | Path) -> list[dict[str, Any]]:
    """Realised tokens per phase and source recorded in a finished run's manifest."""
    return read_manifest(run_dir).extra.get("realised", [])
