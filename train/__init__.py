"""Training (`nano2 train`): tokenized shards, pretraining on the compiled mixture plan, post-training.

Pretraining half (token shards are Megatron's .bin/.idx format, read and written by `nano2.contracts.megatron`):
- `tokenize`: curated/synthetic documents (and chat rows, by the training-text rule) -> shards + `tokens` manifests.
- `data`: the mixture loader: exactly the plan's sequences per phase and source, deterministic and resumable.
- `schedule`, `config`: WSD / cosine / constant learning rates; the pydantic pretraining config.
- `inputs`: what a run starts from (the plan, its token directories, the model), checked against each other.
- `loop`: `run_training`, one step after another; `parallel`: DDP / FSDP2 via torchrun and FP8 on GPU;
  `checkpoint`: resumable checkpoints; `plot`: the loss curve.
Post-training: `post` (what SFT, DPO and GRPO share), `sft`, `dpo`, `grpo`, `merge`, `rewards` and `post_cli`.
"""
