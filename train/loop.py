"""The pretraining loop (`nano2 train pretrain`, long-context CPT, and distillation through `loss_fn`).

One readable loop: the mixture loader deals each step's global batch exactly as the plan says, the batch is split
over data-parallel ranks and micro-batches (gradient accumulation to the global batch), AdamW steps with the
schedule's rate, and every N steps a checkpoint saves the model, the optimizer, the loader and the RNG state, so
`--resume` reproduces an uninterrupted run's losses exactly. What the run starts from is resolved in
`train/inputs.py`; DDP/FSDP2 and FP8 wrapping live in `train/parallel.py`.

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
  token that follows `input_ids[:, t]`, IGNORE_INDEX (-100) where there is none (the last position). It runs under
  the configured autocast and returns the micro-batch's mean loss (a scalar tensor to backpropagate) and a dict of
  floats (or 0-d tensors), the same keys on every call; their mean over micro-batches and ranks is logged in
  metrics.jsonl. A teacher can live in the closure (`torch.no_grad()` around its forward).
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mixtures.plan import Plan
from nano2.console import make_console
from nano2.contracts.chat import IGNORE_INDEX
from nano2.errors import ConfigError, Nano2Error
from nano2.manifest import MANIFEST_NAME, ArtifactKind, hash_config, input_ref, read_manifest
from train.checkpoint import (
    STATE_DIR,
    ResumeState,
    latest_checkpoint,
    load_resume_state,
    prune_checkpoints,
    save_train_state,
    set_rng_state,
    step_dir,
)
from train.config import TrainConfig
from train.data import MixtureLoader, plan_fingerprint
from train.inputs import (
    build_or_load_model,
    check_tokenizer,
    given_model_config,
    resolve_plan,
    resolve_source_dirs,
    source_inputs,
)
from train.parallel import (
    Dist,
    apply_fp8,
    clip_gradients,
    full_state_dicts,
    gradient_sync,
    load_optimizer_state,
    setup_distributed,
    unsharded,
    wrap_model,
)

LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]
METRICS = "metrics.jsonl"
PLAN = "plan.json"
RUN_CONFIG = "run_config.json"  # the config hash a run started with: a resume with another config is refused
LOSS_PNG = "loss.png"


def next_token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions that have a target (`labels` aligned with `logits`, as the loader makes
    them): the pretraining loss, and the LM term of compress/'s distillation."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX)


def next_token_loss(
    model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """The default loss function: next-token cross-entropy, no extra metrics."""
    return next_token_cross_entropy(model(input_ids=input_ids, use_cache=False).logits, labels), {}


@dataclass
class TrainResult:
    """Where the run is and how far it got (a stopped run is resumable from its last checkpoint)."""

    out_dir: Path
    steps_done: int
    total_steps: int
    completed: bool
    losses: list[float] = field(default_factory=list)  # every logged step of the run so far (rank 0)
    realised: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Run:
    """What one `run_training` call was asked to do, and where it runs."""

    cfg: TrainConfig
    out_dir: Path
    config_path: str | Path | None
    loss_fn: LossFn
    resume: bool
    stop_at_step: int | None
    show_progress: bool
    dist: Dist
    console: Any
    parents: tuple[Path, ...] = ()

    def say(self, message: str) -> None:
        """Print on rank 0 only."""
        if self.dist.main:
            self.console.print(message)


@dataclass
class _Model:
    """The model being trained, the module the loop calls, its optimizer, and what its checkpoints are saved with."""

    base: torch.nn.Module
    wrapped: torch.nn.Module
    optimizer: torch.optim.Optimizer
    hybrid: Any  # model.configs.HybridConfig, named after the run
    architecture: str
    tokenizer_dir: Path | None
    given: bool  # passed in by the caller rather than built from `cfg.model`

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.wrapped.parameters() if p.requires_grad]


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
    parents: Sequence[str | Path] = (),
) -> TrainResult:
    """Train on the plan's data (see the module docstring for the interface). `parents`: the checkpoints a given
    model was made from (a pruned student's parent, a distillation teacher), recorded as inputs for lineage."""
    out = Path(out_dir) if out_dir is not None else cfg.output_dir
    if out is None:
        raise ConfigError(config_path, "output_dir", "no output directory: set output_dir or pass -o")
    dist = setup_distributed(cfg)
    run = _Run(
        cfg=cfg,
        out_dir=out,
        config_path=config_path,
        loss_fn=loss_fn or next_token_loss,
        resume=resume,
        stop_at_step=stop_at_step,
        show_progress=progress,
        dist=dist,
        console=make_console(),
        parents=tuple(Path(p) for p in parents),
    )
    try:
        return _train(run, model)
    finally:
        if dist.owns_group:
            torch.distributed.destroy_process_group()


def _train(run: _Run, given_model: torch.nn.Module | None) -> TrainResult:
    """Resolve the inputs, prepare (or resume) the model, step through the plan, save the finished run."""
    cfg, dist, out = run.cfg, run.dist, run.out_dir
    plan, plan_input = resolve_plan(cfg, run.config_path)
    accumulation = _accumulation_steps(run, plan)
    schedule = _schedule(run, plan)
    source_dirs = resolve_source_dirs(plan, cfg, run.config_path)
    loader = MixtureLoader(plan, source_dirs, seed=cfg.data.seed, shuffle=cfg.data.shuffle)
    latest = _prepare_out_dir(out, run.resume)
    if cfg.precision.fp8.enabled and not cfg.precision.bf16:
        raise ConfigError(
            run.config_path, "precision.bf16", "fp8 trains the layers it keeps out of FP8 in bf16: set bf16 true"
        )
    _check_same_config(run, latest)
    if run.resume and _finished(out):
        run.say(f"{out}: this run is already complete; nothing to resume")
        return TrainResult(out, plan.total_steps, plan.total_steps, True, _logged_losses(out), read_realised(out))

    model, resume_state = _prepare_model(run, given_model, source_dirs, loader, latest, schedule)
    start = loader.state.step
    _open_run_dir(run, plan, resume_state)
    end = plan.total_steps if run.stop_at_step is None else min(plan.total_steps, run.stop_at_step)
    run.say(_summary(run, plan, accumulation))

    started = time.perf_counter()
    progress = _ProgressWithLoss(run.console, run.show_progress and dist.main)
    task = progress.add_task(plan.phase_at_step(min(start, plan.total_steps - 1)).name, total=end, completed=start)
    phase = None
    with progress, open(out / METRICS, "a", encoding="utf-8") if dist.main else contextlib.nullcontext() as metrics:
        for step in range(start, end):
            t0 = time.perf_counter()
            data = loader.next_batch(dist.rank, dist.world_size)
            if data.phase != phase:
                if phase is not None:
                    run.say(f"step {step:,}: phase {data.phase} begins")
                phase = data.phase
            lr = schedule(step)
            for group in model.optimizer.param_groups:
                group["lr"] = lr
            input_ids = torch.from_numpy(data.input_ids).to(dist.device)
            labels = torch.from_numpy(data.labels()).to(dist.device)
            loss, extras, grad_norm = _optimizer_step(run, model, input_ids, labels, accumulation)
            elapsed = time.perf_counter() - t0
            record = {
                "step": step,
                "phase": data.phase,
                "loss": loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens": (step + 1) * plan.tokens_per_step,
                "sequences": data.global_counts,
                **extras,
                "step_s": round(elapsed, 4),
                "tokens_per_s": round(plan.tokens_per_step / max(elapsed, 1e-9), 1),
            }
            if not math.isfinite(loss):
                raise Nano2Error(f"step {step}: loss is {loss}; stopping (lower the LR or check the data)")
            done = step + 1
            if dist.main and (done % cfg.log_every == 0 or done == end):
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
            progress.update(task, completed=done, description=data.phase, loss=f"{loss:.4f}")
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < plan.total_steps:
                _save_checkpoint(run, model, loader, done)

    steps_done = loader.state.step
    completed = steps_done == plan.total_steps
    result = TrainResult(out, steps_done, plan.total_steps, completed, realised=loader.realised_rows())
    if completed:
        model_state, _ = full_state_dicts(model.wrapped, dist)
        if dist.main:
            _finish(run, model, model_state, plan=plan, plan_input=plan_input, loader=loader, source_dirs=source_dirs)
    dist.barrier()
    if dist.main:
        result.losses = _logged_losses(out)
        verb = "finished" if completed else f"stopped at step {steps_done:,} of {plan.total_steps:,}"
        last = f"{result.losses[-1]:.4f}" if result.losses else "-"
        seconds = time.perf_counter() - started
        run.say(f"{verb}: {steps_done - start:,} steps in {seconds:.1f}s; last loss {last}; {out}")
    return result


def _optimizer_step(
    run: _Run, model: _Model, input_ids: torch.Tensor, labels: torch.Tensor, accumulation: int
) -> tuple[float, dict[str, float], float]:
    """One AdamW step on this rank's slice of the global batch, micro-batch by micro-batch; returns the loss and
    the loss function's metrics (means over micro-batches and ranks) and the gradient norm before clipping."""
    dist, micro = run.dist, run.cfg.micro_batch_size
    loss_sum = torch.zeros((), device=dist.device)
    extra_sums: dict[str, float] = {}
    for i in range(accumulation):
        rows = slice(i * micro, (i + 1) * micro)
        with gradient_sync(model.wrapped, dist, last_micro_batch=i == accumulation - 1):
            with torch.autocast(dist.device.type, dtype=torch.bfloat16, enabled=run.cfg.precision.bf16):
                loss, extras = run.loss_fn(model.wrapped, input_ids[rows], labels[rows])
            (loss / accumulation).backward()
        loss_sum += loss.detach().float()
        for key, value in extras.items():
            extra_sums[key] = extra_sums.get(key, 0.0) + float(value)
    grad_norm = clip_gradients(model.params, run.cfg.optimizer.grad_clip or math.inf)
    model.optimizer.step()
    model.optimizer.zero_grad(set_to_none=True)

    keys = sorted(extra_sums)
    logged = torch.tensor([loss_sum.item(), *(extra_sums[k] for k in keys)], dtype=torch.float64)
    logged = dist.mean(logged) / accumulation
    return logged[0].item(), {k: logged[j + 1].item() for j, k in enumerate(keys)}, grad_norm


# ------------------------------------------------------------------------------------------------ setup


def _accumulation_steps(run: _Run, plan: Plan) -> int:
    """Micro-batches per rank and step: the global batch split over ranks and micro-batches."""
    batch, world, micro = plan.global_batch_size, run.dist.world_size, run.cfg.micro_batch_size
    if batch % (world * micro):
        raise ConfigError(
            run.config_path,
            "micro_batch_size",
            f"the global batch of {batch} sequences does not split into {world} rank(s) x micro-batches of {micro}",
        )
    return batch // (world * micro)


def _schedule(run: _Run, plan: Plan) -> Callable[[int], float]:
    try:
        return run.cfg.schedule.build(plan.total_steps, plan.tokens_per_step)
    except ValueError as exc:
        raise ConfigError(run.config_path, "schedule", str(exc)) from None


def _prepare_model(
    run: _Run,
    given: torch.nn.Module | None,
    source_dirs: dict[str, Path],
    loader: MixtureLoader,
    latest: tuple[int, Path] | None,
    schedule: Callable[[int], float],
) -> tuple[_Model, ResumeState | None]:
    """The model (given, built or loaded; resumed from `latest`, and the loader with it) on its device, wrapped,
    with its optimizer. Keep the order of these steps: the seeded ones make a run reproducible."""
    cfg, dist, where = run.cfg, run.dist, run.config_path
    if given is None:
        base, hybrid, tokenizer_dir = build_or_load_model(cfg, where)
    else:
        base = given
        hybrid, tokenizer_dir = given_model_config(base, cfg)
    check_tokenizer(source_dirs, base.config.vocab_size, tokenizer_dir, where)
    base.train()
    torch.manual_seed(cfg.seed)

    resume_state = None
    if latest is not None:
        resume_state = load_resume_state(latest[1])
        base.load_state_dict(resume_state.model_state, strict=True)
        loader.load_state_dict(resume_state.loader_state)
        if loader.state.step != resume_state.steps_done:
            raise Nano2Error(f"{latest[1]}: loader state is at step {loader.state.step}, the checkpoint at {latest[0]}")
        run.say(f"resuming {run.out_dir} from step {resume_state.steps_done:,} ({latest[1].name})")
    elif run.resume:
        run.say(f"no checkpoint in {run.out_dir}: starting from step 0")

    apply_fp8(base, cfg, dist.device, run.console if dist.main else make_console(stderr=True))
    if cfg.activation_checkpointing:
        if not hasattr(base, "activation_checkpointing_enable"):
            raise ConfigError(where, "activation_checkpointing", "the model has no activation_checkpointing_enable()")
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    base.to(dist.device)
    wrapped = wrap_model(base, dist)
    optimizer = make_optimizer(wrapped, cfg, schedule(loader.state.step))
    if resume_state is not None:
        load_optimizer_state(wrapped, optimizer, resume_state.optim_state)
        states = resume_state.rng_states
        set_rng_state(states[dist.rank] if dist.rank < len(states) else states[0])
    model = _Model(base, wrapped, optimizer, hybrid.with_(name=cfg.name), hybrid.name, tokenizer_dir, given is not None)
    return model, resume_state


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


def _summary(run: _Run, plan: Plan, accumulation: int) -> str:
    cfg, dist = run.cfg, run.dist
    return (
        f"[bold]{cfg.name}[/]: plan {plan.name!r}, {plan.total_steps:,} steps x {plan.global_batch_size} x "
        f"{plan.seq_len} tokens, phases {', '.join(f'{p.name}@{p.start_step}' for p in plan.phases)}; "
        f"{dist.world_size} rank(s) ({cfg.parallel.strategy if dist.enabled else 'single process'}), "
        f"micro-batch {cfg.micro_batch_size} x {accumulation}, {dist.device}"
        + (", bf16 autocast" if cfg.precision.bf16 else "")
    )


class _ProgressWithLoss:
    """A rich progress bar whose task carries the latest loss."""

    def __init__(self, console: Any, enabled: bool):
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

    def __enter__(self) -> _ProgressWithLoss:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)


# ------------------------------------------------------------------------------------------------ the run directory


def _finished(out_dir: Path) -> bool:
    if not (out_dir / MANIFEST_NAME).exists():
        return False
    manifest = read_manifest(out_dir)
    return manifest.kind == ArtifactKind.CHECKPOINT and bool(manifest.extra.get("completed"))


def _prepare_out_dir(out_dir: Path, resume: bool) -> tuple[int, Path] | None:
    """The checkpoint to resume from (None: start at step 0); refuses to start over an existing run."""
    latest = latest_checkpoint(out_dir)
    if resume:
        return latest
    if out_dir.exists() and (latest or (out_dir / METRICS).exists() or (out_dir / MANIFEST_NAME).exists()):
        raise Nano2Error(f"{out_dir}: already holds a run; pass --resume to continue it or choose another -o")
    return None


def _config_hash(cfg: TrainConfig) -> str:
    """What makes a run the same run: its config, wherever its output goes."""
    return hash_config(cfg.model_dump(mode="json", exclude={"output_dir"}))


def _check_same_config(run: _Run, latest: tuple[int, Path] | None) -> None:
    """Resuming continues the run that is there; with another config it would mix two runs in one checkpoint."""
    recorded = run.out_dir / RUN_CONFIG
    if not (run.resume and latest is not None and recorded.exists()):
        return
    before = json.loads(recorded.read_text(encoding="utf-8")).get("config_hash")
    if before != _config_hash(run.cfg):
        raise ConfigError(
            run.config_path,
            None,
            f"{run.out_dir} holds a run started with another config; resuming would mix the two: "
            "restore that config, or start over in another output directory",
        )


def _open_run_dir(run: _Run, plan: Plan, resume_state: ResumeState | None) -> None:
    """plan.json, and metrics.jsonl started afresh or cut back to the checkpoint (its later steps are recomputed,
    as after a kill); every rank waits for rank 0 to write them."""
    if run.dist.main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        (run.out_dir / PLAN).write_text(plan.to_json(), encoding="utf-8")
        metrics_path = run.out_dir / METRICS
        if resume_state is None:
            metrics_path.write_text("", encoding="utf-8")
            body = {"config_hash": _config_hash(run.cfg)}
            (run.out_dir / RUN_CONFIG).write_text(json.dumps(body) + "\n", encoding="utf-8")
        elif metrics_path.exists():
            lines = [ln for ln in metrics_path.read_text(encoding="utf-8").splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln)["step"] < resume_state.steps_done]
            metrics_path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")
    run.dist.barrier()


def _logged_losses(out_dir: Path) -> list[float]:
    from train.plot import read_metrics

    return [r["loss"] for r in read_metrics(out_dir / METRICS)]


def _save_checkpoint(run: _Run, model: _Model, loader: MixtureLoader, steps_done: int) -> None:
    """An intermediate checkpoint (model + train state), written under a temporary name and renamed when whole."""
    from model.io import save_checkpoint

    model_state, optim_state = full_state_dicts(model.wrapped, run.dist, model.optimizer)
    rngs = run.dist.gather_rng()
    if run.dist.main:
        final = step_dir(run.out_dir, steps_done)
        tmp = final.with_name(f".{final.name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        save_train_state(tmp / STATE_DIR, steps_done, optim_state, loader.state_dict(), rngs)
        save_checkpoint(
            unsharded(model.base, model_state),
            tmp,
            model.hybrid,
            tokenizer_dir=model.tokenizer_dir,
            extra={"step": steps_done, "architecture": model.architecture},
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        prune_checkpoints(run.out_dir, run.cfg.keep_checkpoints)
    run.dist.barrier()


def _finish(
    run: _Run,
    model: _Model,
    model_state: dict[str, torch.Tensor] | None,
    *,
    plan: Plan,
    plan_input: Path,
    loader: MixtureLoader,
    source_dirs: dict[str, Path],
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
    cfg = run.cfg
    records = read_metrics(run.out_dir / METRICS)
    if cfg.plot and records:
        plot_loss(records, plan, run.out_dir / LOSS_PNG, f"{cfg.name}: {plan.name}")
    inputs = [input_ref(plan_input), *source_inputs(source_dirs)]
    if cfg.model is not None and cfg.model.init_from is not None and not model.given:
        inputs.append(input_ref(cfg.model.init_from))
    inputs.extend(input_ref(parent) for parent in run.parents)
    inputs = list({ref.path: ref for ref in inputs}.values())  # a parent may also be the model it was given
    extra = {
        "run": cfg.name,
        "architecture": model.architecture,
        "plan": PLAN,
        "plan_name": plan.name,
        "plan_fingerprint": plan_fingerprint(plan),
        "total_steps": plan.total_steps,
        "steps_done": loader.state.step,
        "completed": True,
        "tokens_trained": loader.state.step * plan.tokens_per_step,
        "final_loss": records[-1]["loss"] if records else None,
        "world_size": run.dist.world_size,
        "train_config": cfg.model_dump(mode="json"),
        "realised": rows,
        "read": loader.read_ranges(),  # which documents, exactly (train.data.MixtureLoader.read_ranges)
    }
    save_checkpoint(
        unsharded(model.base, model_state),
        run.out_dir,
        model.hybrid,
        tokenizer_dir=model.tokenizer_dir,
        inputs=inputs,
        extra=extra,
    )


def read_realised(run_dir: str | Path) -> list[dict[str, Any]]:
    """Realised tokens per phase and source recorded in a finished run's manifest."""
    return read_manifest(run_dir).extra.get("realised", [])
