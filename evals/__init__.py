"""Evaluation harness: benchmark loaders, generation runs, scores with confidence intervals, reports.

Answers are judged by `verify/` (math, multiple choice, code in the sandbox, pass@k), the same judges the reasoning
SFT filter and the GRPO rewards use; this package holds what is specific to benchmarks and runs:

- `evals.benchmarks`: loaders for the staged files (`load_benchmark(name, data_dir)` -> `EvalItem`s with a fixed
  prompt format), `EVAL_ONLY` / `eval_files()` for keeping them out of training data.
- `evals.code_programs`: HumanEval/MBPP items plus completions as test programs for `verify.sandbox`.
- `evals.ifeval`: IFEval and M-IFEval instruction checkers, loader and metrics.
- `evals.config`, `evals.tasks`, `evals.plan`, `evals.scoring`, `evals.store`, `evals.intervals`, `evals.summary`,
  `evals.run`: `nano2 eval run` (see `evals.run`); `evals.budget`, `evals.throughput`, `evals.report`: the other
  `nano2 eval` commands.

Submodules are imported on use so that `import evals` stays cheap.
"""
