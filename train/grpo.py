"""GRPO with verifiable rewards (train/rewards.py) through TRL's GRPOTrainer.

Prompts come from two tasks, both built from GSM8K-train (real problems, and never the test split):
- `math`: the question with "put your final answer within \\boxed{}"; reward 1 when math-verify finds the gold answer;
- `instruction_following`: a question (GSM8K-style JSONL `question` field, or the prompt turns of chat-row Parquet)
  with a few IFEval-style constraints appended; reward = share of the constraints the reply follows.

Each prompt is rendered with the Nano 2 chat template in one of `reasoning_modes` (rows alternate between them), so
rollouts happen with and without thinking, as in the paper's RLHF stage. Rewards read the completion token ids
(special tokens kept), so the end of the reasoning trace is visible to them.

Generation: transformers' `generate` (CPU or GPU), or vLLM on a GPU (`generation.backend: vllm`, imported by TRL only
then). The KL term is off by default (beta 0, no reference model); with beta > 0 TRL loads the reference from the
policy's local checkpoint path (set by `train.post.load_policy`), never from the hub.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nano2.contracts.chat import NO_THINK_SWITCH, THINK_SWITCH
from nano2.errors import ConfigError, Nano2Error
from train.post import (
    PostTrainConfig,
    PreparedRun,
    RowReport,
    RunResult,
    check_checkpoint,
    check_device,
    check_output_dir,
    finish_run,
    load_config_file,
    load_policy,
    parquet_files,
    quiet_libraries,
    read_chat_rows,
    rich_progress_callbacks,
    trl_arguments,
    use_cpu,
)
from train.rewards import (
    INSTRUCTION_TASK,
    MATH_TASK,
    InstructionReward,
    MathReward,
    draw_constraints,
    load_gsm8k,
    with_instructions,
)

MATH_SUFFIX = "\nPut your final answer within \\boxed{}."


class MathTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path = Field(description="GSM8K-train JSONL(.gz): question, answer with a '#### N' line")
    limit: int | None = Field(default=None, gt=0)
    offset: int = Field(default=0, ge=0, description="skip this many rows first")


class InstructionTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path = Field(description="GSM8K-style JSONL(.gz) with `question`, or chat-row Parquet (prompt turns)")
    limit: int | None = Field(default=None, gt=0)
    offset: int = Field(default=0, ge=0)
    constraints_per_prompt: int = Field(default=2, gt=0, le=4)


class Tasks(BaseModel):
    model_config = ConfigDict(extra="forbid")
    math: MathTask | None = None
    instruction_following: InstructionTask | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Tasks:
        if self.math is None and self.instruction_following is None:
            raise ValueError("give at least one task: math or instruction_following")
        return self


class Generation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: Literal["transformers", "vllm"] = "transformers"
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_gpu_memory_utilization: float = Field(default=0.3, gt=0, le=1)


class GRPORunConfig(PostTrainConfig):
    stage: str = "grpo"
    tasks: Tasks
    reasoning_modes: list[Literal["think", "no_think"]] = Field(default=["think", "no_think"], min_length=1)
    num_generations: int = Field(default=8, ge=2, description="completions per prompt (the group)")
    max_completion_length: int = Field(gt=0)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    beta: float = Field(default=0.0, ge=0, description="KL coefficient; 0 = no reference model")
    epsilon: float = Field(default=0.2, gt=0, description="PPO-style clip range")
    reward_weights: dict[Literal["math", "instruction_following"], float] = Field(
        default_factory=dict, description="weight per reward; 1.0 for a reward not listed"
    )
    generation: Generation = Field(default_factory=Generation)

    @model_validator(mode="after")
    def _groups_fit_batches(self) -> GRPORunConfig:
        per_step = self.train.batch_size * self.train.gradient_accumulation_steps
        if per_step % self.num_generations:
            raise ValueError(
                f"train.batch_size x train.gradient_accumulation_steps ({per_step}) must be a multiple of "
                f"num_generations ({self.num_generations}): every prompt's group is scored together"
            )
        return self


def load_grpo_config(path: str | Path, **overrides: Any) -> GRPORunConfig:
    return load_config_file(path, GRPORunConfig, **overrides)  # type: ignore[return-value]


def render_prompt(user_text: str, mode: str, earlier: list[dict[str, str]] | None = None) -> str:
    """Chat-template prompt text in a reasoning mode (a system switch; the template strips it from the text)."""
    from model.tokenizer import render_chat

    switch = NO_THINK_SWITCH if mode == "no_think" else THINK_SWITCH
    turns = [{"role": "system", "content": switch}, *(earlier or []), {"role": "user", "content": user_text}]
    return render_chat(turns, add_generation_prompt=True)


def _instruction_bases(task: InstructionTask, config_path: str | Path | None) -> list[tuple[str, list[dict]]]:
    """(request text, earlier turns) pairs: GSM8K questions, or the last user turn of chat rows."""
    path = task.path
    if not path.exists():
        raise ConfigError(config_path, "tasks.instruction_following.path", f"{path}: not found")
    end = None if task.limit is None else task.offset + task.limit
    if path.suffix == ".parquet" or path.is_dir():
        rows, _ = read_chat_rows(parquet_files([path], config_path, "tasks.instruction_following.path"), limit=end)
        bases = []
        for row in rows[task.offset :]:
            user_turns = [i for i, m in enumerate(row.prompt) if m["role"] == "user"]
            if not user_turns:
                continue
            last = user_turns[-1]
            earlier = [m for m in row.prompt[:last] if m["role"] != "system"]
            bases.append((row.prompt[last]["content"], earlier))
        return bases
    return [(r["question"], []) for r in load_gsm8k(path, limit=task.limit, offset=task.offset)]


def build_prompts(cfg: GRPORunConfig, config_path: str | Path | None = None) -> tuple[list[dict[str, str]], RowReport]:
    """GRPO rows {prompt, task, gold, constraints}; the reasoning mode alternates row by row."""
    report = RowReport()
    rows: list[dict[str, str]] = []
    modes = cfg.reasoning_modes
    if cfg.tasks.math is not None:
        math = cfg.tasks.math
        if not math.path.is_file():
            raise ConfigError(config_path, "tasks.math.path", f"{math.path}: not found")
        for item in load_gsm8k(math.path, limit=math.limit, offset=math.offset):
            mode = modes[len(rows) % len(modes)]
            rows.append({"prompt": render_prompt(item["question"] + MATH_SUFFIX, mode), "task": MATH_TASK,
                         "gold": item["gold"], "constraints": ""})  # fmt: skip
            report.variants[f"{MATH_TASK}/{mode}"] += 1
    if cfg.tasks.instruction_following is not None:
        task = cfg.tasks.instruction_following
        rng = random.Random(cfg.train.seed)
        for text, earlier in _instruction_bases(task, config_path):
            constraints = draw_constraints(rng, text, task.constraints_per_prompt)
            mode = modes[len(rows) % len(modes)]
            rows.append({
                "prompt": render_prompt(with_instructions(text, constraints), mode, earlier),
                "task": INSTRUCTION_TASK,
                "gold": "",
                "constraints": json.dumps([c.model_dump(exclude_none=True) for c in constraints]),
            })  # fmt: skip
            report.variants[f"{INSTRUCTION_TASK}/{mode}"] += 1
    if not rows:
        raise Nano2Error("no GRPO prompts were built (check the task paths and limits)")
    report.read = len(rows)
    return rows, report


def check_generation_backend(cfg: GRPORunConfig, config_path: str | Path | None) -> None:
    import importlib.util

    if cfg.generation.backend != "vllm":
        return
    if use_cpu():
        raise ConfigError(config_path, "generation.backend", "vllm needs a CUDA device; use transformers on CPU")
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(config_path, "generation.backend", "vllm is not installed (pip install '.[gpu]')")


def prepare_grpo(cfg: GRPORunConfig, config_path: str | Path | None = None) -> PreparedRun:
    """Check the inputs, build the prompts and the GRPOTrainer with both verifiable rewards."""
    check_checkpoint(cfg.checkpoint, config_path)
    data_inputs = [t.path for t in (cfg.tasks.math, cfg.tasks.instruction_following) if t is not None]
    check_output_dir(cfg.output_dir, [cfg.checkpoint, *data_inputs], config_path)
    check_generation_backend(cfg, config_path)
    check_device(cfg, config_path)
    rows, report = build_prompts(cfg, config_path)
    quiet_libraries()
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer, hf_tokenizer = load_policy(cfg.checkpoint, cfg.dtype)
    rewards = [MathReward(tokenizer), InstructionReward(tokenizer)]
    args = trl_arguments(
        GRPOConfig,
        cfg.train,
        cfg.output_dir,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        reward_weights=[cfg.reward_weights.get(r.__name__, 1.0) for r in rewards],
        use_vllm=cfg.generation.backend == "vllm",
        vllm_mode=cfg.generation.vllm_mode,
        vllm_gpu_memory_utilization=cfg.generation.vllm_gpu_memory_utilization,
        shuffle_dataset=True,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=rewards,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=hf_tokenizer,
        callbacks=rich_progress_callbacks(),
    )
    plot_keys = ("reward", "rewards/math/mean", "rewards/instruction_following/mean", "completions/mean_length")
    return PreparedRun(trainer, cfg, config_path, cfg.stage, len(rows), report, data_inputs, plot_keys)


def run_grpo(cfg: GRPORunConfig, config_path: str | Path | None = None) -> RunResult:
    """Train with GRPO on verifiable rewards and save the policy as a model/ checkpoint."""
    return finish_run(prepare_grpo(cfg, config_path))
