"""Minitron for the hybrid Mamba-2/Transformer (`nano2 compress`): importance, pruning surgery, memory-budgeted
architecture search and logit distillation of HF NemotronH checkpoints, on CPU or GPU.

`importance`, `prune`, `nas` and `distill` are the library, each one step; `pipeline` chains them (and is all that
`cli` calls for the multi-step commands)."""
