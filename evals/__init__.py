"""Evaluation harness: benchmark loaders, scorers checked against the benchmarks' own gold, and a code sandbox.

- `evals.benchmarks`: loaders for the staged files (`load_benchmark(name, data_dir)` -> `EvalItem`s with a fixed
  prompt format), `EVAL_ONLY` / `eval_files()` for keeping them out of training data.
- `evals.math_scoring`: final-answer extraction (boxed, `####`, "the answer is", last number; any script's digits)
  and equivalence (exact numbers, then math_verify, then normalised text).
- `evals.choice`: multiple-choice letter extraction.
- `evals.sandbox`: one subprocess per program with limits, a network namespace and an audit-hook guard.
- `evals.code_scoring`: HumanEval/MBPP test programs and unbiased pass@k.

Submodules are imported on use so that `import evals` stays cheap (math_verify and sympy load only for math).
"""
