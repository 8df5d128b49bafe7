"""Training (`nano2 train`): tokenized shards, pretraining on the compiled mixture plan, post-training.

Pretraining half:
- `indexed`: Megatron-LM's .bin/.idx token shards, the one reader and writer of the format.
- `tokenize`: curated/synthetic documents (and chat rows, by the training-text rule) -> shards + `tokens` manifests.
- `data`: the mixture loader: exactly the plan's sequences per phase and source, deterministic and resumable.
- `schedule`, `config`: WSD / cosine / constant learning rates; the pydantic pretraining config.
- `loop`: `run_training` (DDP / FSDP2 via torchrun, bf16, FP8 on GPU, checkpoints, metrics); `checkpoint`, `plot`.
Post-training (SFT, DPO, GRPO, merge) lives in `sft`, `dpo`, `grpo`, `merge`, `rewards` and `post_cli`.
"""
