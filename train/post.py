"""What SFT, DPO and GRPO share: settings, input checks, the chat rows they read, and saving the result.

Each post-training run is a TRL trainer over rows we tokenize ourselves; this module holds everything around it that
is the same for the three: the training settings (mapped onto TRL's config classes, with no hub, wandb or
intermediate saves), checkpoint and data checks whose errors name the config file and field, the policy and
tokenizer loaded from a model/ checkpoint, chat rows read from Parquet and validated (each drop counted by reason),
the training-text rule shared with pretraining tokenization, and the finished run saved as a model/ checkpoint with a
manifest, metrics.jsonl and a plot.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model.tokenizer import TURN_END
from nano2.config import load_yaml_model, validate_model
from nano2.contracts.chat import ChatRow, validate_chat_record
from nano2.errors import ConfigError, Nano2Error
from nano2.manifest import MANIFEST_NAME, ArtifactKind, InputRef, OutputStats, Stats, input_ref, read_manifest

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "training.png"

# --------------------------------------------------------------------------------------------------- settings


class TrainingSettings(BaseModel):
    """Optimizer and loop settings shared by SFT, DPO and GRPO (mapped onto TRL's config classes)."""

    model_config = ConfigDict(extra="forbid")
    learning_rate: float = Field(gt=0)
    lr_scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "constant"
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1, description="share of the steps spent warming up")
    weight_decay: float = Field(default=0.0, ge=0)
    adam_beta1: float = Field(default=0.9, ge=0, lt=1)
    adam_beta2: float = Field(default=0.95, ge=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    batch_size: int = Field(gt=0, description="rows per device per micro-batch")
    gradient_accumulation_steps: int = Field(default=1, gt=0)
    max_steps: int | None = Field(default=None, gt=0, description="optimizer steps; None = run `epochs` epochs")
    epochs: float = Field(default=1.0, gt=0)
    seed: int = 0
    bf16: bool = Field(default=False, description="bf16 mixed precision (GPU); CPU configs use fp32")
    activation_checkpointing: bool = False
    logging_steps: int = Field(default=1, gt=0)


class PostTrainConfig(BaseModel):
    """Fields every post-training config has: which checkpoint to start from and where the result goes."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    checkpoint: Path = Field(description="model/ checkpoint directory to start from (tokenizer files inside)")
    output_dir: Path
    dtype: Literal["fp32", "bf16"] = "fp32"
    train: TrainingSettings


def load_config_file(path: str | Path, model: type[PostTrainConfig], **overrides: Any) -> PostTrainConfig:
    """Load a YAML config, then apply command-line overrides (None = keep; a dict updates a nested section),
    validated like the file so a bad override names the same field."""
    cfg = load_yaml_model(path, model)
    data = cfg.model_dump()
    changed = False
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
            if not value:
                continue
            value = {**data[key], **value}
        data[key], changed = value, True
    return validate_model(data, model, path) if changed else cfg


def check_checkpoint(path: Path, config_path: str | Path | None, field_name: str = "checkpoint") -> Path:
    """A loadable model/ checkpoint with tokenizer files, else a ConfigError naming the file and field."""
    from model.io import check_checkpoint_dir

    try:
        check_checkpoint_dir(path)
    except Nano2Error as exc:
        raise ConfigError(config_path, field_name, str(exc)) from None
    if not (path / "tokenizer.json").is_file():
        raise ConfigError(config_path, field_name, f"{path}: no tokenizer.json (a model/ checkpoint carries one)")
    return path


def check_output_dir(out: Path, inputs: Sequence[Path], config_path: str | Path | None) -> Path:
    """Refuse to write over an input or over an artifact of another kind (checkpoints may be rewritten)."""
    resolved = out.resolve()
    for item in inputs:
        if resolved == Path(item).resolve():
            raise ConfigError(config_path, "output_dir", f"{out} is also an input; write the result elsewhere")
    if (out / MANIFEST_NAME).exists():
        kind = read_manifest(out).kind
        if kind != ArtifactKind.CHECKPOINT:
            raise ConfigError(config_path, "output_dir", f"{out} already holds a '{kind}' artifact")
    return out


def parquet_files(paths: Sequence[Path], config_path: str | Path | None, field_name: str) -> list[Path]:
    """Expand directories into their *.parquet files (not drop records in decisions/ or dot folders); a missing path or
    an empty directory that is not an artifact is a ConfigError; no files at all is one too."""
    if not paths:
        raise ConfigError(config_path, field_name, "no data paths given")
    files: list[Path] = []
    for i, path in enumerate(paths):
        where = f"{field_name}[{i}]"
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*.parquet") if not any(d.startswith(".") for d in p.relative_to(path).parts[:-1])
            )
            if not found and not (path / "manifest.json").exists():  # an artifact that kept no rows is fine
                raise ConfigError(config_path, where, f"{path}: no .parquet files in this directory")
            files.extend(found)
        elif path.is_file():
            if path.suffix != ".parquet":
                raise ConfigError(config_path, where, f"{path}: expected a .parquet file or a directory of them")
            files.append(path)
        else:
            raise ConfigError(config_path, where, f"{path}: not found")
    if not files:
        raise ConfigError(config_path, field_name, "no .parquet files in any of the data paths (every input is empty)")
    return files


def quiet_libraries() -> None:
    """Offline, and no progress bars or notices from datasets/transformers (our own progress is rich)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_DISABLED", "true")
    import datasets

    from model.io import quiet_transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    quiet_transformers()


def use_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def trl_arguments(config_class: type, settings: TrainingSettings, out_dir: Path, **specific: Any) -> Any:
    """A TRL config for our settings: no hub, no wandb, no intermediate saves, rich progress instead of tqdm."""
    return config_class(
        output_dir=str(out_dir),
        report_to="none",
        push_to_hub=False,
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=use_cpu(),
        bf16=settings.bf16,
        activation_checkpointing=settings.activation_checkpointing,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        adam_beta1=settings.adam_beta1,
        adam_beta2=settings.adam_beta2,
        max_grad_norm=settings.max_grad_norm,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_steps=settings.max_steps if settings.max_steps is not None else -1,
        num_train_epochs=settings.epochs,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_steps=settings.logging_steps,
        dataloader_num_workers=0,
        **specific,
    )


def check_device(cfg: PostTrainConfig, config_path: str | Path | None) -> None:
    """bf16 settings are for GPUs; on a CPU-only machine say so before anything is loaded."""
    if use_cpu() and cfg.train.bf16:
        raise ConfigError(config_path, "train.bf16", "bf16 mixed precision needs a CUDA device; use false on CPU")
    if use_cpu() and cfg.dtype == "bf16":
        raise ConfigError(config_path, "dtype", "bf16 weights are for GPU runs; use fp32 on CPU")


def load_policy(checkpoint: Path, dtype: str) -> tuple[Any, Any, Any]:
    """(model, tokenizers.Tokenizer, HF PreTrainedTokenizerFast) for a model/ checkpoint; the model keeps its local
    path as `_name_or_path`, so anything TRL reloads from it stays on disk."""
    from model.io import load_checkpoint
    from model.tokenizer import load_tokenizer, to_hf_tokenizer

    model = load_checkpoint(checkpoint, dtype=dtype)
    model.config._name_or_path = str(checkpoint)
    tokenizer = load_tokenizer(checkpoint)
    hf_tokenizer = to_hf_tokenizer(tokenizer)
    turn_end = tokenizer.token_to_id(TURN_END)
    model.generation_config.eos_token_id = [hf_tokenizer.eos_token_id, turn_end]
    model.generation_config.pad_token_id = hf_tokenizer.pad_token_id
    return model, tokenizer, hf_tokenizer


def rich_progress_callbacks() -> list[Any]:
    from trl.trainer.callbacks import RichProgressCallback

    return [RichProgressCallback()]


def write_metrics(out_dir: Path, log_history: list[dict[str, Any]], keys: Sequence[str], title: str) -> None:
    """metrics.jsonl (every logged row) and a plot of `keys` against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / METRICS_FILE).open("w", encoding="utf-8") as fh:
        for row in log_history:
            fh.write(json.dumps(row, sort_keys=True, default=float) + "\n")
    series = {k: [(r["step"], r[k]) for r in log_history if k in r and "step" in r] for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.2), squeeze=False)
    for ax, (key, points) in zip(axes[0], series.items(), strict=True):
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, marker="o", markersize=3)
        ax.set_xlabel("optimizer step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_dir / PLOT_FILE, dpi=110)
    plt.close(fig)


@dataclass
class PreparedRun:
    """A TRL trainer ready to train, with what the manifest needs afterwards."""

    trainer: Any
    config: PostTrainConfig
    config_path: str | Path | None
    stage: str
    rows: int
    report: RowReport
    data_inputs: list[Path]
    plot_keys: tuple[str, ...]


@dataclass
class RunResult:
    output_dir: Path
    rows: int
    tokens: int
    log_history: list[dict[str, Any]]


def finish_run(run: PreparedRun) -> RunResult:
    """Train, then save the model as a model/ checkpoint: the manifest's inputs are the start checkpoint (recorded by
    save_checkpoint with the tokenizer it copies), the data and the config file; its extra holds the run config and
    the data counts; metrics.jsonl and a plot sit beside the weights."""
    import trl

    from model.io import load_config, save_checkpoint

    run.trainer.train()
    cfg, history = run.config, run.trainer.state.log_history
    write_metrics(cfg.output_dir, history, run.plot_keys, f"{run.stage}: {cfg.name}")
    inputs: list[InputRef] = [input_ref(p) for p in run.data_inputs]
    if run.config_path is not None:
        inputs.append(input_ref(run.config_path))
    summary = {k: v for row in history for k, v in row.items() if k.startswith("train_")}
    save_checkpoint(
        run.trainer.model,
        cfg.output_dir,
        load_config(cfg.checkpoint).with_(name=cfg.name),
        tokenizer_dir=cfg.checkpoint,
        inputs=inputs,
        extra={
            "stage": run.stage,
            "run_config": cfg.model_dump(mode="json"),
            "trl_version": trl.__version__,
            "data": run.report.output_stats(documents=run.rows).model_dump(mode="json"),
            "summary": summary,
        },
    )
    return RunResult(cfg.output_dir, run.rows, run.report.tokens, history)


# --------------------------------------------------------------------------------------------------- chat rows


def chat_row(record: Mapping[str, Any], report: RowReport) -> ChatRow | None:
    """A validated ChatRow from one Parquet record (the contract's one validator), or None with the reason counted."""
    row = validate_chat_record(record)
    if isinstance(row, str):
        report.drop(row)
        return None
    return row


# --------------------------------------------------------------------------------------------------- reading rows


@dataclass
class RowReport:
    """What reading and preparing rows did: rows kept, drops by reason, rows by variant, token counts."""

    read: int = 0
    dropped: Counter = field(default_factory=Counter)
    variants: Counter = field(default_factory=Counter)
    tokens: int = 0
    loss_tokens: int = 0

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def output_stats(self, documents: int) -> OutputStats:
        by: dict[str, dict[str, Stats]] = {"variant": {k: Stats(documents=v) for k, v in sorted(self.variants.items())}}
        if self.dropped:
            by["dropped"] = {k: Stats(documents=v) for k, v in sorted(self.dropped.items())}
        return OutputStats(documents=documents, tokens=self.tokens, by=by)


def iter_parquet_records(files: Sequence[Path], columns: Sequence[str], optional: Sequence[str] = ()) -> Iterator[dict]:
    """Records of the given columns, file by file and batch by batch (a `limit` stops the reading early); a file
    missing a required column is one clear error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in files:
        try:
            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names
            missing = [c for c in columns if c not in names]
            if missing:
                raise Nano2Error(f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(names)})")
            for batch in parquet.iter_batches(
                batch_size=1024, columns=[*columns, *(c for c in optional if c in names)]
            ):
                yield from batch.to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise Nano2Error(f"{path}: not a readable Parquet file ({exc})") from None


def read_chat_rows(files: Sequence[Path], limit: int | None = None) -> tuple[list[ChatRow], RowReport]:
    """Validated chat rows (the first `limit`), with every dropped row counted by reason (ids must be unique)."""
    report = RowReport()
    rows: list[ChatRow] = []
    seen: set[str] = set()
    for record in iter_parquet_records(files, ["id", "messages"], optional=["reasoning"]):
        if limit is not None and len(rows) >= limit:
            break
        report.read += 1
        row = chat_row(record, report)
        if row is not None and row.id in seen:
            report.drop("duplicate_id")
        elif row is not None:
            seen.add(row.id)
            rows.append(row)
    return rows, report


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def training_text_parts(prompt: Sequence[Mapping[str, str]], target: str) -> tuple[str, str]:
    """(prompt text, completion text) of the training-text rule (model.tokenizer.chat_training_text, the one
    implementation pretraining tokenization uses too)."""
    from model.tokenizer import chat_training_text

    return chat_training_text([*prompt, {"role": "assistant", "content": target}])
