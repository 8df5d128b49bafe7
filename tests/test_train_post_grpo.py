"""GRPO: prompts in both reasoning modes with verifiable rewards, a few CPU steps that change the weights."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from nano2.errors import ConfigError
from nano2.manifest import read_manifest
from train.grpo import GRPORunConfig, build_prompts, load_grpo_config, prepare_grpo
from train.post import finish_run
from train.rewards import parse_constraints

REPO = Path(__file__).resolve().parent.parent
GRPO_TINY = REPO / "train" / "configs" / "grpo-tiny.yaml"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_gsm8k(path: Path, n: int) -> Path:
    """GSM8K-format rows (question, worked answer ending in '#### N')."""
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for i in range(n):
            answer = f"{i} apples and 2 more make {i} + 2 = <<{i}+2={i + 2}>>{i + 2} apples.\n#### {i + 2}"
            fh.write(json.dumps({"question": f"Mia has {i} apples and buys 2 more. How many now?", "answer": answer}))
            fh.write("\n")
    return path


def grpo_config(tmp_path: Path, checkpoint: Path, gsm8k: Path, **changes) -> GRPORunConfig:
    data = {
        "name": "test-grpo", "checkpoint": checkpoint, "output_dir": tmp_path / "out",
        "tasks": {"math": {"path": gsm8k, "limit": 2},
                  "instruction_following": {"path": gsm8k, "offset": 2, "limit": 2, "constraints_per_prompt": 2}},
        "num_generations": 2, "max_completion_length": 6,
        "train": {"learning_rate": 1e-3, "batch_size": 4, "max_steps": 2},
    }  # fmt: skip
    data.update(changes)
    return GRPORunConfig.model_validate(data)


def test_prompts_alternate_reasoning_modes_and_carry_their_checks(tmp_path):
    gsm8k = write_gsm8k(tmp_path / "gsm8k.jsonl.gz", 6)
    rows, report = build_prompts(grpo_config(tmp_path, tmp_path, gsm8k))
    assert [r["task"] for r in rows] == ["math", "math", "instruction_following", "instruction_following"]
    assert [r["prompt"].endswith("<think>\n") for r in rows] == [True, False, True, False]
    assert [r["prompt"].endswith("<think></think>") for r in rows] == [False, True, False, True]
    assert rows[0]["gold"] == "2" and "Mia has 0 apples" in rows[0]["prompt"] and "\\boxed{}" in rows[0]["prompt"]
    assert "Mia has 2 apples" in rows[2]["prompt"]  # the instruction task starts at its offset
    for row in rows[2:]:
        for constraint in parse_constraints(row["constraints"]):
            assert constraint.instruction() in row["prompt"]
    assert report.variants == {"math/think": 1, "math/no_think": 1, "instruction_following/think": 1,
                               "instruction_following/no_think": 1}  # fmt: skip


def test_grpo_runs_a_few_steps_and_changes_the_weights(checkpoint, tmp_path):
    gsm8k = write_gsm8k(tmp_path / "gsm8k.jsonl.gz", 4)
    run = prepare_grpo(grpo_config(tmp_path, checkpoint, gsm8k))
    assert run.trainer.ref_model is None  # beta 0: no reference model is loaded at all
    before = {k: v.clone() for k, v in run.trainer.model.state_dict().items()}
    result = finish_run(run)
    after = run.trainer.model.state_dict()
    assert sum(not torch.equal(before[k], v) for k, v in after.items()) > len(before) // 2
    logged = [row for row in result.log_history if "reward" in row]
    assert len(logged) == 2
    assert all("rewards/math/mean" in row and "rewards/instruction_following/mean" in row for row in logged)
    assert all(0 < row["completions/mean_length"] <= 6 for row in logged)
    manifest = read_manifest(result.output_dir)
    assert manifest.extra["stage"] == "grpo" and manifest.extra["data"]["documents"] == 4
    assert (result.output_dir / "training.png").is_file()


def test_grpo_config_errors_are_clear(tmp_path, checkpoint):
    path = tmp_path / "grpo.yaml"
    text = GRPO_TINY.read_text()
    path.write_text(text.replace("num_generations: 4", "num_generations: 3"))
    with pytest.raises(ConfigError, match=r"grpo\.yaml: .*\(8\) must be a multiple of num_generations \(3\)"):
        load_grpo_config(path)
    path.write_text(text.replace("tasks:\n", "tasks: {}\nold_tasks:\n"))
    with pytest.raises(ConfigError, match=r"grpo\.yaml: tasks: give at least one task"):
        load_grpo_config(path)
    path.write_text(text.replace("reasoning_modes: [think, no_think]", "reasoning_modes: [maybe]"))
    with pytest.raises(ConfigError, match=r"grpo\.yaml: reasoning_modes\[0\]: Input should be 'think' or 'no_think'"):
        load_grpo_config(path)
    shared_gsm8k = "path: ../shared/data/evals/gsm8k_train.jsonl.gz"
    gsm8k = write_gsm8k(tmp_path / "gsm8k.jsonl.gz", 4)
    path.write_text(text.replace(shared_gsm8k, f"path: {gsm8k}", 1).replace(shared_gsm8k, "path: absent.jsonl.gz"))
    cfg = load_grpo_config(path, checkpoint=checkpoint, output_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match=r"grpo\.yaml: tasks\.instruction_following\.path: absent\.jsonl\.gz: not"):
        prepare_grpo(cfg, path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal of vLLM generation")
def test_vllm_generation_is_refused_on_cpu(tmp_path, checkpoint):
    cfg = load_grpo_config(GRPO_TINY, checkpoint=checkpoint, output_dir=tmp_path / "o", generation={"backend": "vllm"})
    with pytest.raises(ConfigError, match=r"grpo-tiny\.yaml: generation\.backend: vllm needs a CUDA device"):
        prepare_grpo(cfg, GRPO_TINY)
