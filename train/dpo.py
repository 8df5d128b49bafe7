"""DPO on preference rows with TRL's DPOTrainer and an explicit, frozen reference model.

Rows (the data contract): `messages` holds the prompt turns only, `chosen` and `rejected` are assistant strings in
the SFT target format. Each side is tokenized by the SFT training-text rule (`train.post.training_text_parts`): the
rendered prompt, then the completion (leading THINK_PREFIX dropped on reasoning-on prompts) ending in
``\\n<SPECIAL_12>\\n``. Tokens go to TRL as ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids``;
`PretokenizedDPOTrainer` only skips TRL's own tokenization, which would append ``</s>`` to string completions or
render them through the chat template (dropping the reasoning trace).

The reference model is always a separately loaded copy (by default of the start checkpoint; `reference` picks another
one): DPOTrainer with ``ref_model=None`` rebuilds one from the model's name, which can reach for the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from nano2.contracts.chat import validate_preference_record
from nano2.errors import Nano2Error
from train.post import (
    PostTrainConfig,
    PreparedRun,
    RowReport,
    RunResult,
    check_checkpoint,
    check_device,
    check_output_dir,
    encode,
    finish_run,
    iter_parquet_records,
    load_config_file,
    load_policy,
    parquet_files,
    quiet_libraries,
    rich_progress_callbacks,
    training_text_parts,
    trl_arguments,
)


class DPORunConfig(PostTrainConfig):
    """One DPO run (paper-facts §5: on-policy preference data; its loss settings are not published)."""

    stage: str = "dpo"
    data: list[Path] = Field(min_length=1, description="preference-row Parquet files or directories")
    reference: Path | None = Field(default=None, description="reference checkpoint; default: a copy of `checkpoint`")
    limit: int | None = Field(default=None, gt=0)
    max_length: int = Field(gt=0, description="prompt + completion tokens per side")
    beta: float = Field(default=0.1, gt=0, description="strength of the KL-style pull towards the reference")
    loss_type: Literal["sigmoid", "ipo", "hinge", "robust"] = "sigmoid"


def load_dpo_config(path: str | Path, **overrides: Any) -> DPORunConfig:
    return load_config_file(path, DPORunConfig, **overrides)  # type: ignore[return-value]


def preference_example(record: dict[str, Any], tokenizer: Any, report: RowReport) -> dict[str, list[int]] | None:
    """prompt_ids / chosen_ids / rejected_ids of one preference row, or None with the drop reason counted."""
    row = validate_preference_record(record)
    if isinstance(row, str):
        report.drop(row)
        return None
    prompt, reasoning = row.prompt, row.reasoning
    prompt_text, chosen = training_text_parts(prompt, record["chosen"])
    _, rejected = training_text_parts(prompt, record["rejected"])
    report.variants["reasoning" if reasoning else "no_think"] += 1
    return {
        "prompt_ids": encode(tokenizer, prompt_text),
        "chosen_ids": encode(tokenizer, chosen),
        "rejected_ids": encode(tokenizer, rejected),
    }


def read_preference_examples(
    files: list[Path], tokenizer: Any, max_length: int, limit: int | None
) -> tuple[list[dict[str, list[int]]], RowReport]:
    """Tokenized preference rows; rows whose prompt alone fills max_length are dropped (no completion would fit)."""
    report = RowReport()
    examples = []
    for record in iter_parquet_records(files, ["id", "messages", "chosen", "rejected"]):
        if limit is not None and len(examples) >= limit:
            break
        report.read += 1
        example = preference_example(record, tokenizer, report)
        if example is None:
            continue
        if len(example["prompt_ids"]) >= max_length:
            report.drop("prompt_fills_max_length")
            continue
        longest = len(example["prompt_ids"]) + max(len(example["chosen_ids"]), len(example["rejected_ids"]))
        if longest > max_length:
            report.variants["cut_at_max_length"] += 1
        report.tokens += len(example["prompt_ids"]) * 2 + len(example["chosen_ids"]) + len(example["rejected_ids"])
        examples.append(example)
    if not examples:
        raise Nano2Error(f"no usable preference rows (read {report.read}; dropped: {dict(report.dropped) or 'none'})")
    return examples, report


def pretokenized_dpo_trainer_class() -> type:
    """DPOTrainer that takes our tokenized rows as they are (defined lazily: TRL is imported only when training)."""
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            missing = {"prompt_ids", "chosen_ids", "rejected_ids"} - set(dataset.column_names)
            if missing:
                raise Nano2Error(f"DPO {dataset_name} dataset is not tokenized (missing {', '.join(sorted(missing))})")
            return dataset

    return PretokenizedDPOTrainer


def prepare_dpo(cfg: DPORunConfig, config_path: str | Path | None = None) -> PreparedRun:
    """Check the inputs, tokenize the preference rows and build the trainer with its own reference copy."""
    check_checkpoint(cfg.checkpoint, config_path)
    reference = cfg.reference or cfg.checkpoint
    if cfg.reference is not None:
        check_checkpoint(cfg.reference, config_path, "reference")
    files = parquet_files(cfg.data, config_path, "data")
    check_output_dir(cfg.output_dir, [cfg.checkpoint, reference, *cfg.data], config_path)
    check_device(cfg, config_path)
    quiet_libraries()
    from datasets import Dataset
    from trl import DPOConfig

    model, tokenizer, hf_tokenizer = load_policy(cfg.checkpoint, cfg.dtype)
    ref_model, _, _ = load_policy(reference, cfg.dtype)
    ref_model.requires_grad_(False)
    examples, report = read_preference_examples(files, tokenizer, cfg.max_length, cfg.limit)
    dataset = Dataset.from_dict({k: [e[k] for e in examples] for k in ("prompt_ids", "chosen_ids", "rejected_ids")})
    args = trl_arguments(DPOConfig, cfg.train, cfg.output_dir, max_length=cfg.max_length, beta=cfg.beta,
                         loss_type=[cfg.loss_type])  # fmt: skip
    trainer = pretokenized_dpo_trainer_class()(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=hf_tokenizer,
        callbacks=rich_progress_callbacks(),
    )
    data_inputs = [*cfg.data] + ([cfg.reference] if cfg.reference is not None else [])
    return PreparedRun(trainer, cfg, config_path, cfg.stage, len(examples), report, data_inputs,
                       ("loss", "rewards/margins", "rewards/accuracies"))  # fmt: skip


def run_dpo(cfg: DPORunConfig, config_path: str | Path | None = None) -> RunResult:
    """Train with DPO against a frozen reference copy and save the policy as a model/ checkpoint."""
    return finish_run(prepare_dpo(cfg, config_path))
