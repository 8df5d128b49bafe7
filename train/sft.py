"""Supervised fine-tuning on chat rows with TRL's SFTTrainer, loss on the assistant target only.

What SFT shares with DPO and GRPO (settings, input checks, reading chat rows, saving the result) is in
`train/post.py`.

Training text of one chat row (the data contract): ``render_chat(messages[:-1], add_generation_prompt=True)`` (the
reasoning switch comes from the conversation, so the prompt ends in an open trace, THINK_PREFIX, or an empty one),
then the target with its leading THINK_PREFIX removed on reasoning-on rows, then ``\\n<SPECIAL_12>\\n``. Prompt and
completion are tokenized separately and concatenated: that is what inference sees (the prompt is encoded, then the
model emits completion tokens), and it makes the loss mask exact: label IGNORE_INDEX on every prompt token, the token
id on every completion token.

Why TRL: SFTTrainer takes pre-tokenized rows (``input_ids`` + ``labels``) as they are, and does packing, the
optimizer, schedules and accumulation. We tokenize ourselves because TRL's own chat path would render the target
through the chat template, which drops reasoning blocks from assistant turns (Nano 2 stores earlier turns without
their reasoning) and so would lose the trace we train on.

Stages (paper-facts §5) are configs of the same command:
- stage 1: packed long sequences, with ``empty_trace_fraction`` (~10%) of reasoning rows turned into reasoning-off
  rows (NO_THINK_SWITCH in the last user turn, target = the answer alone), which teaches the off switch;
- stage 2: unpacked (tool calling suffered from concatenation);
- stage 3: ``truncated_traces``: a fraction of reasoning rows get their trace cut at a budget drawn from
  [min_tokens, max_tokens] by the same rule inference uses (``model.generate``: close after the first newline token
  once the budget is reached, hard close at budget + grace), then THINK_CLOSE and the full answer.

Packing modes: ``bfd`` (TRL's best-fit decreasing, padding-free; each sample stays separate: attention gets a
block-diagonal mask from the position ids, Mamba-2 gets the sequence boundaries) needs the ``mamba_ssm`` kernels,
because transformers' PyTorch Mamba path cannot keep packed samples apart and refuses them; so ``bfd`` is GPU-only.
``wrapped`` (concatenate and cut into fixed blocks, like pretraining: a sample may attend to the one before it and may
be split across blocks) runs anywhere and is what the CPU configs use. ``none`` pads each row on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nano2.contracts.chat import IGNORE_INDEX, NO_THINK_SWITCH, THINK_CLOSE, THINK_PREFIX, strip_thinking
from nano2.errors import ConfigError, Nano2Error
from train.post import (
    ChatRow,
    PostTrainConfig,
    PreparedRun,
    RowReport,
    RunResult,
    check_checkpoint,
    check_device,
    check_output_dir,
    encode,
    finish_run,
    load_config_file,
    load_policy,
    parquet_files,
    quiet_libraries,
    read_chat_rows,
    rich_progress_callbacks,
    training_text_parts,
    trl_arguments,
)

# --------------------------------------------------------------------------------------------------- rows


def sft_example(tokenizer: Any, prompt: Sequence[Mapping[str, str]], target: str) -> dict[str, list[int]]:
    """input_ids = prompt tokens + completion tokens; labels = IGNORE_INDEX on the prompt, the ids on the completion."""
    prompt_text, completion = training_text_parts(prompt, target)
    prompt_ids, completion_ids = encode(tokenizer, prompt_text), encode(tokenizer, completion)
    return {"input_ids": prompt_ids + completion_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids}


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) fixed by its inputs (seed, row id, purpose): a reproducible coin that needs no RNG state."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick_exact_share(ids: Sequence[str], fraction: float, seed: int, purpose: str) -> set[str]:
    """round(fraction x len(ids)) ids, chosen by a seeded hash order, so the realised share is exact and stable."""
    count = round(fraction * len(ids))
    ranked = sorted(ids, key=lambda i: stable_fraction(seed, purpose, i))
    return set(ranked[:count])


# --------------------------------------------------------------------------------------------------- stage variants


def without_trace(row: ChatRow) -> ChatRow:
    """The reasoning-off twin of a reasoning row: /no_think in the last user turn (the last switch wins), the answer
    alone as target; rendered, the prompt ends in an empty trace."""
    prompt = [dict(m) for m in row.prompt]
    last_user = max(i for i, m in enumerate(prompt) if m["role"] != "assistant")
    prompt[last_user]["content"] = f"{prompt[last_user]['content']} {NO_THINK_SWITCH}"
    return ChatRow(id=row.id, prompt=prompt, target=strip_thinking(row.target), reasoning=False)


def truncate_trace(tokenizer: Any, trace: str, budget: int, grace: int, newline_ids: frozenset[int]) -> str | None:
    """The trace as Nano 2's budget rule would close it at `budget` tokens, or None when it is not longer than that.

    Mirrors model.generate.ThinkingBudget: once `budget` trace tokens are out, THINK_CLOSE follows the first token that
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
    """The row with its trace cut by the budget rule, the full answer kept after it; None if there is nothing to cut."""
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
