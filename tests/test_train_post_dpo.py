"""DPO: preference rows tokenized by the SFT training-text rule, an explicit frozen reference, weights that move."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from model.tokenizer import load_tokenizer, render_chat
from nano2.errors import ConfigError, Nano2Error
from nano2.manifest import read_manifest
from train.dpo import DPORunConfig, load_dpo_config, prepare_dpo, read_preference_examples
from train.post import finish_run

REPO = Path(__file__).resolve().parent.parent
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema([("id", pa.string()), ("messages", pa.list_(MESSAGE)), ("chosen", pa.string()),
                    ("rejected", pa.string()), ("reasoning", pa.bool_())])  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def preference_record(i: int, reasoning: bool) -> dict:
    system = "Answer briefly." if reasoning else "Answer briefly. /no_think"
    if reasoning:
        chosen = f"<think>\nadd {i} and 3\n</think>\nThe total is {i + 3}."
        rejected = f"<think>\nguess\n</think>\nThe total is {i + 30}."
    else:
        chosen, rejected = f"The total is {i + 3}.", f"The total is {i + 30}."
    messages = [{"role": "system", "content": system}, {"role": "user", "content": f"What is {i} plus 3?"}]
    return {"id": f"p{i}", "messages": messages, "chosen": chosen, "rejected": rejected, "reasoning": reasoning}


def write_preferences(path: Path, records: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(records, schema=SCHEMA), path)
    return path


def test_both_sides_follow_the_training_text_rule(tiny_tokenizer_dir, tmp_path):
    tokenizer = load_tokenizer(tiny_tokenizer_dir)
    records = [preference_record(0, True), preference_record(1, False)]
    data = write_preferences(tmp_path / "pref.parquet", records)
    examples, report = read_preference_examples([data], tokenizer, max_length=512, limit=None)
    assert report.variants == {"reasoning": 1, "no_think": 1}
    for record, example in zip(records, examples, strict=True):
        prompt = render_chat(record["messages"], add_generation_prompt=True)
        assert example["prompt_ids"] == tokenizer.encode(prompt, add_special_tokens=False).ids
        for side in ("chosen", "rejected"):
            text = record[side].removeprefix("<think>\n") if record["reasoning"] else record[side]
            decoded = tokenizer.decode(example[f"{side}_ids"], skip_special_tokens=False)
            assert decoded == text + "\n<SPECIAL_12>\n"


def test_bad_preference_rows_are_counted(tiny_tokenizer_dir, tmp_path):
    tokenizer = load_tokenizer(tiny_tokenizer_dir)
    same = {**preference_record(0, False), "rejected": preference_record(0, False)["chosen"]}
    traceless = {**preference_record(1, True), "chosen": "The total is 4."}
    data = write_preferences(tmp_path / "pref.parquet", [same, traceless, preference_record(2, True)])
    examples, report = read_preference_examples([data], tokenizer, max_length=512, limit=None)
    assert len(examples) == 1
    assert report.dropped == {"chosen_equals_rejected": 1, "chosen_reasoning_target_without_trace": 1}
    with pytest.raises(
        Nano2Error, match=r"no usable preference rows \(read 3; dropped: .*'prompt_fills_max_length': 1"
    ):
        read_preference_examples([data], tokenizer, max_length=8, limit=None)


def test_dpo_moves_the_policy_and_never_the_reference(checkpoint, tmp_path):
    data = write_preferences(tmp_path / "pref.parquet", [preference_record(i, i % 2 == 0) for i in range(4)])
    cfg = DPORunConfig.model_validate({
        "name": "test-dpo", "checkpoint": checkpoint, "data": [data], "output_dir": tmp_path / "out",
        "max_length": 256, "beta": 0.1, "train": {"learning_rate": 1e-3, "batch_size": 2, "max_steps": 3},
    })  # fmt: skip
    run = prepare_dpo(cfg)
    trainer = run.trainer
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    policy_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    ref_before = {k: v.clone() for k, v in trainer.ref_model.state_dict().items()}

    result = finish_run(run)

    moved = sum(not torch.equal(policy_before[k], v) for k, v in trainer.model.state_dict().items())
    assert moved > len(policy_before) // 2
    assert all(torch.equal(ref_before[k], v) for k, v in trainer.ref_model.state_dict().items())
    losses = [row["loss"] for row in result.log_history if "loss" in row]
    margins = [row["rewards/margins"] for row in result.log_history if "rewards/margins" in row]
    assert len(losses) == 3 and losses[-1] < losses[0] and margins[-1] > 0
    manifest = read_manifest(result.output_dir)
    assert manifest.extra["stage"] == "dpo"
    assert {Path(i.path).resolve() for i in manifest.inputs} >= {checkpoint.resolve(), data.resolve()}


def test_dpo_config_errors_are_clear(tmp_path, checkpoint):
    path = tmp_path / "dpo.yaml"
    text = (REPO / "train" / "configs" / "dpo-tiny.yaml").read_text()
    path.write_text(text.replace("beta: 0.1", "beta: -1"))
    with pytest.raises(ConfigError, match=r"dpo\.yaml: beta: Input should be greater than 0"):
        load_dpo_config(path)
    path.write_text(text.replace("loss_type: sigmoid", "loss_type: dpo"))
    with pytest.raises(ConfigError, match=r"dpo\.yaml: loss_type: Input should be 'sigmoid', 'ipo', 'hinge' or"):
        load_dpo_config(path)
    path.write_text(text)
    data = write_preferences(tmp_path / "pref.parquet", [preference_record(0, True)])
    cfg = load_dpo_config(path, checkpoint=checkpoint, data=[data], reference=tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"dpo\.yaml: reference: .*nowhere: checkpoint directory not found"):
        prepare_dpo(cfg, path)
