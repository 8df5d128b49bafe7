"""SFT: the loss mask is exactly the target, stage variants follow their rules, training lowers the loss, and bad
configs or rows are reported clearly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.generate import make_budget, newline_token_ids
from model.tokenizer import load_tokenizer, render_chat
from nano2.contracts.chat import CHAT_SCHEMA, IGNORE_INDEX
from nano2.errors import ConfigError
from nano2.manifest import read_manifest
from train.post import ChatRow, RowReport, read_chat_rows
from train.sft import (
    SFTRunConfig,
    load_sft_config,
    prepare_sft,
    prepare_sft_rows,
    run_sft,
    sft_example,
    truncate_trace,
    with_truncated_trace,
)

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "train" / "configs"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def chat_record(i: int, reasoning: bool, lines: int = 2) -> dict:
    """A contract-shaped chat row: reasoning targets are '<think>\\n{trace}\\n</think>\\n{answer}'."""
    trace = "\n".join(f"step {k}: add the numbers of the plan and check the total" for k in range(lines))
    answer = f"The total is {i + 3}."
    system = "You are a careful assistant." if reasoning else "You are a careful assistant. /no_think"
    target = f"<think>\n{trace}\n</think>\n{answer}" if reasoning else answer
    return {
        "id": f"row-{i}",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": f"What is {i} plus 3?"},
            {"role": "assistant", "content": target},
        ],
        "reasoning": reasoning,
        "task": "math",
        "source_id": f"src-{i}",
        "prompt_version": "v1",
        "model": "test",
        "sampling": "{}",
        "metadata": "{}",
    }


def write_rows(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=CHAT_SCHEMA), path)
    return path


def config(tmp_path: Path, checkpoint: Path, data: Path, **changes) -> SFTRunConfig:
    base = {
        "name": "test-sft",
        "checkpoint": checkpoint,
        "data": [data],
        "output_dir": tmp_path / "out",
        "max_length": 256,
        "train": {"learning_rate": 1e-3, "batch_size": 2, "max_steps": 3},
    }
    base.update(changes)
    return SFTRunConfig.model_validate(base)


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return load_tokenizer(tiny_tokenizer_dir)


# --------------------------------------------------------------------------------------------------- the loss mask


@pytest.mark.parametrize("reasoning", [True, False])
def test_labels_mask_exactly_the_rendered_prompt(tokenizer, reasoning):
    record = chat_record(7, reasoning)
    prompt, target = record["messages"][:-1], record["messages"][-1]["content"]
    example = sft_example(tokenizer, prompt, target)

    prompt_text = render_chat(prompt, add_generation_prompt=True)
    assert prompt_text.endswith("<think>\n" if reasoning else "<think></think>")
    expected_completion = (target.removeprefix("<think>\n") if reasoning else target) + "\n<SPECIAL_12>\n"
    prompt_ids = tokenizer.encode(prompt_text, add_special_tokens=False).ids
    completion_ids = tokenizer.encode(expected_completion, add_special_tokens=False).ids

    assert example["input_ids"] == prompt_ids + completion_ids
    for position, (token, label) in enumerate(zip(example["input_ids"], example["labels"], strict=True)):
        if position < len(prompt_ids):
            assert label == IGNORE_INDEX, f"prompt token {position} is in the loss"
        else:
            assert label == token, f"target token {position} is not in the loss"
    assert tokenizer.decode(example["input_ids"], skip_special_tokens=False) == prompt_text + expected_completion


def test_multi_turn_rows_train_only_the_last_assistant_turn(tokenizer):
    prompt = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "<think>\nany will do\n</think>\nBlue."},
        {"role": "user", "content": "Another one?"},
    ]
    target = "<think>\npick a different one\n</think>\nRed."
    example = sft_example(tokenizer, prompt, target)
    n_prompt = len(tokenizer.encode(render_chat(prompt), add_special_tokens=False).ids)
    trained = tokenizer.decode([t for t in example["labels"] if t != IGNORE_INDEX], skip_special_tokens=False)
    assert example["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert trained == "pick a different one\n</think>\nRed.\n<SPECIAL_12>\n"
    assert "any will do" not in tokenizer.decode(example["input_ids"], skip_special_tokens=False)


def test_trainer_batches_keep_the_mask(checkpoint, tmp_path, tokenizer):
    data = write_rows(tmp_path / "chat.parquet", [chat_record(i, i % 2 == 0) for i in range(4)])
    run = prepare_sft(config(tmp_path, checkpoint, data), None)
    rows, _ = read_chat_rows([data])
    expected = [sft_example(tokenizer, r.prompt, r.target) for r in rows]
    assert run.trainer.train_dataset["labels"] == [e["labels"] for e in expected]
    batch = next(iter(run.trainer.get_train_dataloader()))
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        length = int(mask.sum())
        match = next(e for e in expected if e["input_ids"] == ids[:length].tolist())
        assert labels[:length].tolist() == match["labels"]
        assert (labels[length:] == IGNORE_INDEX).all()


# --------------------------------------------------------------------------------------------------- training


def test_loss_falls_and_the_result_is_a_checkpoint_with_lineage(checkpoint, tmp_path):
    data = write_rows(tmp_path / "chat" / "part-0.parquet", [chat_record(i, i % 2 == 0) for i in range(4)])
    cfg = config(tmp_path, checkpoint, data.parent, train={"learning_rate": 2e-3, "batch_size": 4, "max_steps": 5})
    result = run_sft(cfg, None)

    losses = [row["loss"] for row in result.log_history if "loss" in row]
    assert len(losses) == 5
    assert losses[-1] < 0.8 * losses[0], losses
    manifest = read_manifest(result.output_dir)
    assert manifest.kind == "checkpoint"
    assert manifest.extra["stage"] == "sft"
    assert manifest.extra["data"]["documents"] == 4
    variants = {k: v["documents"] for k, v in manifest.extra["data"]["by"]["variant"].items()}
    assert variants == {"no_think": 2, "reasoning": 2}
    inputs = {Path(i.path).resolve(): i for i in manifest.inputs}
    assert inputs[checkpoint.resolve()].manifest_id == read_manifest(checkpoint).id
    assert inputs[data.parent.resolve()].content_hash is not None
    assert (result.output_dir / "metrics.jsonl").is_file() and (result.output_dir / "training.png").is_file()
    assert (result.output_dir / "tokenizer.json").read_bytes() == (checkpoint / "tokenizer.json").read_bytes()


def test_shipped_stage1_config_runs_from_the_cli_with_wrapped_packing(cli, checkpoint, tmp_path):
    data = write_rows(tmp_path / "chat.parquet", [chat_record(i, True, lines=1) for i in range(10)])
    out = tmp_path / "stage1"
    config_path = CONFIGS / "sft-tiny-stage1.yaml"
    result = cli("train", "sft", config_path, "--checkpoint", checkpoint, "--data", data, "--output", out,
                 "--max-steps", "2")  # fmt: skip
    assert result.code == 0, result.err
    assert "ok: sft tiny-12b-sft-stage1: 10 rows" in result.out
    manifest = read_manifest(out)
    assert manifest.extra["run_config"]["packing"] == "wrapped"
    assert manifest.extra["data"]["by"]["variant"]["empty_trace"]["documents"] == 1  # 10% of 10 reasoning rows
    assert any(Path(i.path) == config_path for i in manifest.inputs)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2]


def test_cli_errors_are_one_line(cli, tmp_path):
    config_path = tmp_path / "stage2.yaml"
    config_path.write_text((CONFIGS / "sft-tiny-stage2.yaml").read_text())
    result = cli("train", "sft", config_path, "--checkpoint", tmp_path / "missing", "--data", tmp_path)
    assert result.code == 2
    assert (
        result.err.strip()
        == f"error: {config_path}: checkpoint: {tmp_path / 'missing'}: checkpoint directory not found"
    )


POST_TRAINING_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if p.name.startswith(("sft-", "dpo-", "grpo-")))


@pytest.mark.parametrize("path", POST_TRAINING_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_post_training_config_loads(path):
    from train.dpo import load_dpo_config
    from train.grpo import load_grpo_config

    loaders = {"sft-": load_sft_config, "dpo-": load_dpo_config, "grpo-": load_grpo_config}
    loader = next(f for prefix, f in loaders.items() if path.name.startswith(prefix))
    cfg = loader(path)
    assert cfg.name and cfg.train.learning_rate > 0


# --------------------------------------------------------------------------------------------------- stage variants


def test_empty_traces_are_an_exact_seeded_share(tokenizer, tmp_path):
    rows = [ChatRow(f"r{i}", chat_record(i, True)["messages"][:-1], chat_record(i, True)["messages"][-1]["content"],
                    True) for i in range(20)]  # fmt: skip
    cfg = config(tmp_path, tmp_path, tmp_path, empty_trace_fraction=0.1)
    first = prepare_sft_rows(cfg, rows, RowReport(), tokenizer)
    again = prepare_sft_rows(cfg, rows, RowReport(), tokenizer)
    assert first.examples == again.examples
    assert first.report.variants == {"reasoning": 18, "empty_trace": 2}
    texts = [tokenizer.decode(e["input_ids"], skip_special_tokens=False) for e in first.examples]
    emptied = [t for t in texts if "<think></think>" in t]
    assert len(emptied) == 2
    for text in emptied:
        assert "step 0" not in text  # the trace is gone, the answer stays
        assert text.endswith(".\n<SPECIAL_12>\n") and "The total is" in text


def test_truncated_trace_matches_the_inference_budget_rule(tokenizer):
    trace = "".join(f"line {k} of a long derivation with several words\n" for k in range(30))
    trace_ids = tokenizer.encode(trace, add_special_tokens=False).ids
    for budget in (5, 17, 40):
        budget_rule = make_budget(tokenizer, budget=budget, grace=50)
        consumed = 0
        for token in trace_ids:
            consumed += 1
            if budget_rule.observe(token):
                break
        cut = truncate_trace(tokenizer, trace, budget, 50, newline_token_ids(tokenizer))
        assert cut == tokenizer.decode(trace_ids[:consumed], skip_special_tokens=False)
        assert budget_rule.forced == "newline" and cut.endswith("\n") and trace.startswith(cut)

    row = ChatRow("x", [{"role": "user", "content": "q"}], f"<think>\n{trace}</think>\nThe answer is 4.", True)
    cut_row = with_truncated_trace(row, tokenizer, 17, 50, newline_token_ids(tokenizer))
    assert cut_row.target.startswith("<think>\nline 0") and cut_row.target.endswith("\n</think>\nThe answer is 4.")
    assert len(cut_row.target) < len(row.target)
    assert truncate_trace(tokenizer, "short\n", 17, 50, newline_token_ids(tokenizer)) is None


# --------------------------------------------------------------------------------------------------- bad input


def test_bad_rows_are_dropped_with_reasons(tmp_path):
    good = chat_record(0, True)
    user_last = {**chat_record(1, True), "messages": chat_record(1, True)["messages"][:-1]}
    flag_wrong = {**chat_record(2, False), "reasoning": True}
    no_trace = chat_record(3, True)
    no_trace["messages"][-1]["content"] = "The total is 6."
    data = write_rows(tmp_path / "rows.parquet", [good, user_last, flag_wrong, no_trace, good])
    rows, report = read_chat_rows([data])
    assert [r.id for r in rows] == ["row-0"]
    assert report.read == 5
    assert report.dropped == {
        "duplicate_id": 1,
        "last_message_not_assistant": 1,
        "reasoning_flag_disagrees_with_switch": 1,
        "reasoning_target_without_trace": 1,
    }


def test_bad_configs_name_file_field_and_expectation(tmp_path, checkpoint):
    path = tmp_path / "bad.yaml"
    base = (CONFIGS / "sft-tiny-stage3.yaml").read_text()

    path.write_text(base.replace("packing: wrapped", "packing: zigzag"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: packing: .*'none', 'wrapped' or 'bfd'"):
        load_sft_config(path)
    path.write_text(base.replace("min_tokens: 32", "min_tokens: 99"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: truncated_traces: min_tokens \(99\) must be <= max_tokens"):
        load_sft_config(path)
    path.write_text(base.replace("max_length: 2048", "max_length: 2048\nlearning_rate: 1"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: learning_rate: unknown key; expected one of: name, "):
        load_sft_config(path)
    path.write_text(base)
    with pytest.raises(ConfigError, match=r"bad\.yaml: checkpoint: runs/tiny/sft-stage2: checkpoint directory not"):
        prepare_sft(load_sft_config(path, data=[tmp_path]), path)
    data = write_rows(tmp_path / "d.parquet", [chat_record(0, True)])
    with pytest.raises(ConfigError, match=r"bad\.yaml: data\[0\]: .*missing\.parquet: not found"):
        prepare_sft(load_sft_config(path, checkpoint=checkpoint, data=[tmp_path / "missing.parquet"]), path)
    with pytest.raises(ConfigError, match=r"bad\.yaml: output_dir: .* is also an input"):
        prepare_sft(load_sft_config(path, checkpoint=checkpoint, data=[data], output_dir=checkpoint), path)


@pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is not None, reason="mamba_ssm installed: bfd is allowed")
def test_bfd_packing_without_mamba_kernels_is_refused(tmp_path, checkpoint):
    data = write_rows(tmp_path / "d.parquet", [chat_record(0, True)])
    path = CONFIGS / "sft-nano2-12b-stage1.yaml"
    cfg = load_sft_config(path, checkpoint=checkpoint, data=[data], output_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"sft-nano2-12b-stage1\.yaml: packing: bfd needs the mamba_ssm kernels"):
        prepare_sft(cfg, path)
