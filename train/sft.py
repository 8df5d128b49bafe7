"""Supervised fine-tuning on chat rows with TRL's SFTTrainer, loss on the assistant target only.

Also holds what every post-training run shares (DPO and GRPO import it): the training settings, checkpoint and data
checks that name the config file and field, TRL arguments that never reach the network, and saving the result as a
`model/` checkpoint with a manifest, metrics and a plot.

Training text of one chat row (the data contract): ``render_chat(messages[:-1], add_generation_prompt=True)`` (the
reasoning switch comes from the conversation, so the prompt ends in ``<think>\\n`` or ``<think></think>``), then the
target with its leading ``<think>\\n`` removed on reasoning-on rows, then ``\\n<SPECIAL_12>\\n``. Prompt and completion
are tokenized separately and concatenated: that is what inference sees (the prompt is encoded, then the model emits
completion tokens), and it makes the loss mask exact: label -100 on every prompt token, the token id on every
completion token.

Why TRL: SFTTrainer takes pre-tokenized rows (``input_ids`` + ``labels``) as they are, and does packing, the
optimizer, schedules and accumulation. We tokenize ourselves because TRL's own chat path would render the target
through the chat template, which drops ``<think>`` blocks from assistant turns (Nano 2 stores earlier turns without
their reasoning) and so would lose the trace we train on.

Stages (paper-facts §5) are configs of the same command:
- stage 1: packed long sequences, with ``empty_trace_fraction`` (~10%) of reasoning rows turned into reasoning-off
  rows (``/no_think`` in the last user turn, target = the answer alone), which teaches the off switch;
- stage 2: unpacked (tool calling suffered from concatenation);
- stage 3: ``truncated_traces``: a fraction of reasoning rows get their trace cut at a budget drawn from
  [min_tokens, max_tokens] by the same rule inference uses (``model.generate``: close after the first newline token
  once the budget is reached, hard close at budget + grace), then ``</think>`` and the full answer.

Packing modes: ``bfd`` (TRL's best-fit decreasing, padding-free; each sample stays separate: attention gets a
block-diagonal mask from the position ids, Mamba-2 gets the sequence boundaries) needs the ``mamba_ssm`` kernels,
because transformers' PyTorch Mamba path cannot keep packed samples apart and refuses them; so ``bfd`` is GPU-only.
``wrapped`` (concatenate and cut into fixed blocks, like pretraining: a sample may attend to the one before it and may
be split across blocks) runs anywhere and is what the CPU configs use. ``none`` pads each row on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nano2.config import load_yaml_model, validate_model
from nano2.errors import ConfigError, Nano2Error
from nano2.manifest import MANIFEST_NAME, InputRef, OutputStats, Stats, input_ref, read_manifest

THINK_PREFIX = "<think>\n"
THINK_CLOSE = "</think>"
NO_THINK = "/no_think"
IGNORE_INDEX = -100
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "training.png"

# --------------------------------------------------------------------------------------------------- shared settings


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
        if kind != "checkpoint":
            raise ConfigError(config_path, "output_dir", f"{out} already holds a {kind!r} artifact")
    return out


def parquet_files(paths: Sequence[Path], config_path: str | Path | None, field_name: str) -> list[Path]:
    """Expand directories into their *.parquet files (not drop records in decisions/ or dot folders); a missing path or
    an empty directory that is not an artifact is a ConfigError; no files at all is one too."""
    from curation.decisions import DECISIONS_DIR

    if not paths:
        raise ConfigError(config_path, field_name, "no data paths given")
    files: list[Path] = []
    for i, path in enumerate(paths):
        where = f"{field_name}[{i}]"
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*.parquet")
                if not any(d == DECISIONS_DIR or d.startswith(".") for d in p.relative_to(path).parts[:-1])
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
    turn_end = tokenizer.token_to_id("<SPECIAL_12>")
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


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) fixed by its inputs (seed, row id, purpose): a reproducible coin that needs no RNG state."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick_exact_share(ids: Sequence[str], fraction: float, seed: int, purpose: str) -> set[str]:
    """round(fraction x len(ids)) ids, chosen by a seeded hash order, so the realised share is exact and stable."""
    count = round(fraction * len(ids))
    ranked = sorted(ids, key=lambda i: stable_fraction(seed, purpose, i))
    return set(ranked[:count])


# --------------------------------------------------------------------------------------------------- chat rows


@dataclass
class ChatRow:
    """One validated SFT row: the prompt turns and the assistant target, as the contract defines them."""

    id: str
    prompt: list[dict[str, str]]
    target: str
    reasoning: bool


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


def _messages(value: Any) -> list[dict[str, str]] | None:
    """Plain dicts from Arrow structs; None when the value is not a list of {role, content} mappings."""
    if not isinstance(value, list) or not all(isinstance(m, Mapping) for m in value):
        return None
    return [{"role": m.get("role"), "content": m.get("content")} for m in value]


def validate_prompt(prompt: list[dict[str, str]]) -> str | None:
    """None when the prompt turns render; else the drop reason."""
    from model.tokenizer import reasoning_mode

    if not prompt:
        return "no_prompt_turns"
    if prompt[-1]["role"] == "assistant":
        return "prompt_ends_with_assistant"
    try:
        reasoning_mode(prompt)
    except Nano2Error:
        return "bad_messages"
    return None


def validate_target(target: Any, reasoning: bool) -> str | None:
    """None when an assistant target has the contract's shape for its reasoning mode; else the drop reason."""
    if not isinstance(target, str) or not target.strip():
        return "empty_target"
    if reasoning:
        if not target.startswith(THINK_PREFIX) or THINK_CLOSE not in target:
            return "reasoning_target_without_trace"
    elif "<think>" in target or THINK_CLOSE in target:
        return "no_think_target_with_trace"
    return None


def chat_row(record: Mapping[str, Any], report: RowReport) -> ChatRow | None:
    """A validated ChatRow from one Parquet record, or None with the drop reason counted."""
    from model.tokenizer import reasoning_mode

    messages = _messages(record.get("messages"))
    if messages is None:
        report.drop("bad_messages")
        return None
    if not messages or messages[-1]["role"] != "assistant":
        report.drop("last_message_not_assistant")
        return None
    prompt, target = messages[:-1], messages[-1]["content"]
    reason = validate_prompt(prompt)
    if reason is not None:
        report.drop(reason)
        return None
    reasoning = reasoning_mode(prompt)
    flag = record.get("reasoning")
    if flag is not None and bool(flag) != reasoning:
        report.drop("reasoning_flag_disagrees_with_switch")
        return None
    reason = validate_target(target, reasoning)
    if reason is not None:
        report.drop(reason)
        return None
    return ChatRow(id=str(record.get("id")), prompt=prompt, target=target, reasoning=reasoning)


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


def sft_example(tokenizer: Any, prompt: Sequence[Mapping[str, str]], target: str) -> dict[str, list[int]]:
    """input_ids = prompt tokens + completion tokens; labels = -100 on the prompt, the ids on the completion."""
    prompt_text, completion = training_text_parts(prompt, target)
    prompt_ids, completion_ids = encode(tokenizer, prompt_text), encode(tokenizer, completion)
    return {"input_ids": prompt_ids + completion_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids}


# --------------------------------------------------------------------------------------------------- stage variants


def without_trace(row: ChatRow) -> ChatRow:
    """The reasoning-off twin of a reasoning row: /no_think in the last user turn (the last switch wins), the answer
    alone as target; rendered, the prompt ends in <think></think> ("an empty trace")."""
    from model.tokenizer import strip_thinking

    prompt = [dict(m) for m in row.prompt]
    last_user = max(i for i, m in enumerate(prompt) if m["role"] != "assistant")
    prompt[last_user]["content"] = f"{prompt[last_user]['content']} {NO_THINK}"
    return ChatRow(id=row.id, prompt=prompt, target=strip_thinking(row.target), reasoning=False)


def truncate_trace(tokenizer: Any, trace: str, budget: int, grace: int, newline_ids: frozenset[int]) -> str | None:
    """The trace as Nano 2's budget rule would close it at `budget` tokens, or None when it is not longer than that.

    Mirrors model.generate.ThinkingBudget: once `budget` trace tokens are out, </think> follows the first token that
    contains a newline; without one within `grace` more tokens, the trace is cut at budget + grace and "\\n" added.
    """
    ids = encode(tokenizer, trace)
    if len(ids) <= budget:
        return None
    for position in range(budget - 1, min(len(ids), budget + grace)):
        if ids[position] in newline_ids:
            if position + 1 == len(ids):
                return None  # the trace's own last newline: nothing is cut
            return tokenizer.decode(ids[: position + 1], skip_special_tokens=False)
    if len(ids) <= budget + grace:
        return None
    return tokenizer.decode(ids[: budget + grace], skip_special_tokens=False) + "\n"


def with_truncated_trace(
    row: ChatRow, tokenizer: Any, budget: int, grace: int, newline_ids: frozenset[int]
) -> ChatRow | None:
    """The row with its trace cut by the budget rule and the full answer kept after </think>; None if nothing to cut."""
    body = row.target.removeprefix(THINK_PREFIX)
    trace, _, answer = body.partition(THINK_CLOSE)
    cut = truncate_trace(tokenizer, trace, budget, grace, newline_ids)
    if cut is None:
        return None
    return ChatRow(id=row.id, prompt=row.prompt, target=f"{THINK_PREFIX}{cut}{THINK_CLOSE}{answer}", reasoning=True)


# --------------------------------------------------------------------------------------------------- config and run


class TruncatedTraces(BaseModel):
    """Stage 3: the share of reasoning rows whose trace is cut, and the budget range (tokens) it is cut at."""

    model_config = ConfigDict(extra="forbid")
    fraction: float = Field(gt=0, le=1, description="share of reasoning rows to truncate (paper: UNVERIFIED)")
    min_tokens: int = Field(gt=0)
    max_tokens: int = Field(gt=0)
    grace: int = Field(default=500, ge=0, description="tokens allowed past the budget while waiting for a newline")

    @model_validator(mode="after")
    def _range(self) -> TruncatedTraces:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must be <= max_tokens ({self.max_tokens})")
        return self


class SFTRunConfig(PostTrainConfig):
    """One SFT stage."""

    stage: str = Field(default="sft", description="label recorded in the manifest (stage1, stage2, ...)")
    data: list[Path] = Field(min_length=1, description="chat-row Parquet files or directories")
    limit: int | None = Field(default=None, gt=0, description="use only the first N valid rows")
    max_length: int = Field(gt=0, description="tokens per row (unpacked) or per packed sequence")
    packing: Literal["none", "wrapped", "bfd"] = "none"
    empty_trace_fraction: float = Field(default=0.0, ge=0, le=1, description="stage 1: share of reasoning rows "
                                        "turned into reasoning-off rows")  # fmt: skip
    truncated_traces: TruncatedTraces | None = None


def load_sft_config(path: str | Path, **overrides: Any) -> SFTRunConfig:
    return load_config_file(path, SFTRunConfig, **overrides)  # type: ignore[return-value]


@dataclass
class PreparedSFT:
    examples: list[dict[str, list[int]]]
    report: RowReport


def prepare_sft_rows(cfg: SFTRunConfig, rows: list[ChatRow], report: RowReport, tokenizer: Any) -> PreparedSFT:
    """Apply the stage's variants (empty / truncated traces), tokenize, and fit each row to max_length unpacked."""
    from model.generate import newline_token_ids

    reasoning_ids = [r.id for r in rows if r.reasoning]
    emptied = pick_exact_share(reasoning_ids, cfg.empty_trace_fraction, cfg.train.seed, "empty-trace")
    truncated: set[str] = set()
    budgets: dict[str, int] = {}
    newline_ids: frozenset[int] = frozenset()
    if cfg.truncated_traces is not None:
        spec = cfg.truncated_traces
        remaining = [i for i in reasoning_ids if i not in emptied]
        truncated = pick_exact_share(remaining, spec.fraction, cfg.train.seed, "truncated-trace")
        span = spec.max_tokens - spec.min_tokens + 1
        budgets = {
            i: spec.min_tokens + int(stable_fraction(cfg.train.seed, "budget", i) * span) for i in sorted(truncated)
        }
        newline_ids = newline_token_ids(tokenizer)

    examples = []
    for row in rows:
        variant = "reasoning" if row.reasoning else "no_think"
        if row.id in emptied:
            row, variant = without_trace(row), "empty_trace"
        elif row.id in truncated:
            cut = with_truncated_trace(row, tokenizer, budgets[row.id], cfg.truncated_traces.grace, newline_ids)
            if cut is None:
                variant = "reasoning_shorter_than_budget"
            else:
                row, variant = cut, "truncated_trace"
        example = sft_example(tokenizer, row.prompt, row.target)
        prompt_len = example["labels"].count(IGNORE_INDEX)
        if cfg.packing != "wrapped" and prompt_len >= cfg.max_length:
            report.drop("prompt_fills_max_length")
            continue
        if cfg.packing != "wrapped" and len(example["input_ids"]) > cfg.max_length:
            example = {k: v[: cfg.max_length] for k, v in example.items()}
            report.variants["cut_at_max_length"] += 1
        report.variants[variant] += 1
        report.tokens += len(example["input_ids"])
        report.loss_tokens += sum(1 for label in example["labels"] if label != IGNORE_INDEX)
        examples.append(example)
    if not examples:
        raise Nano2Error(f"no usable SFT rows (read {report.read}; dropped: {dict(report.dropped) or 'none'})")
    return PreparedSFT(examples=examples, report=report)


def check_packing_support(packing: str, config_path: str | Path | None) -> None:
    """bfd packing keeps samples apart only with the mamba_ssm kernels (see the module docstring)."""
    import importlib.util

    if packing == "bfd" and importlib.util.find_spec("mamba_ssm") is None:
        raise ConfigError(
            config_path,
            "packing",
            "bfd needs the mamba_ssm kernels (GPU) to keep packed samples apart in the Mamba-2 layers; "
            "use packing: wrapped (concatenate and chunk) or none on this machine",
        )


def prepare_sft(cfg: SFTRunConfig, config_path: str | Path | None = None) -> PreparedRun:
    """Check the inputs, read and tokenize the rows, and build the SFTTrainer (nothing is trained yet)."""
    check_checkpoint(cfg.checkpoint, config_path)
    files = parquet_files(cfg.data, config_path, "data")
    check_output_dir(cfg.output_dir, [cfg.checkpoint, *cfg.data], config_path)
    check_packing_support(cfg.packing, config_path)
    check_device(cfg, config_path)
    quiet_libraries()
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer, hf_tokenizer = load_policy(cfg.checkpoint, cfg.dtype)
    rows, report = read_chat_rows(files, cfg.limit)
    prepared = prepare_sft_rows(cfg, rows, report, tokenizer)
    columns = {k: [e[k] for e in prepared.examples] for k in ("input_ids", "labels")}
    args = trl_arguments(
        SFTConfig,
        cfg.train,
        cfg.output_dir,
        max_length=cfg.max_length,
        packing=cfg.packing != "none",
        packing_strategy="wrapped" if cfg.packing == "wrapped" else "bfd",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(columns),
        processing_class=hf_tokenizer,
        callbacks=rich_progress_callbacks(),
    )
    return PreparedRun(trainer, cfg, config_path, cfg.stage, len(prepared.examples), prepared.report, list(cfg.data),
                       ("loss", "mean_token_accuracy", "learning_rate"))  # fmt: skip


def run_sft(cfg: SFTRunConfig, config_path: str | Path | None = None) -> RunResult:
    """Train one SFT stage and save it as a model/ checkpoint (see the module docstring for the rules)."""
    return finish_run(prepare_sft(cfg, config_path))
