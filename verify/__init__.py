"""Answer verification: the one place that reads a model's answer, judges it, or runs the code it wrote.

The reasoning SFT filter (synthetic/), the GRPO rewards (train/) and the eval scores (evals/) all call these
functions, so one answer gets one verdict wherever it is judged (tests/test_verify_same_verdict.py checks it).

- `verify.visible`: the visible answer, the text after the reasoning trace (what every verdict is given on).
- `verify.math`: final-answer extraction (boxed, `####`, "the answer is", last number; any script's digits) and
  equivalence with the gold (exact numbers, then math_verify, then normalised text).
- `verify.gsm8k`: the gold answer of a GSM8K solution (`#### N`).
- `verify.choice`: the letter a multiple-choice response chose.
- `verify.code`: the code a reply answers with, and its test program.
- `verify.sandbox`: one bubblewrap jail per program (namespaces, read-only stdlib root, seccomp, limits); verdicts
  authenticated by a per-run secret; tests compare built-in values only. No bwrap: it refuses to run code.
- `verify.pass_at_k`: the unbiased pass@k estimate from per-sample verdicts.

Layering: this package imports only the standard library, third-party packages and nano2's ground floor
(nano2.contracts, nano2.errors); never evals, synthetic, train or model. Submodules are imported on use so that
`import verify` stays cheap (math_verify and sympy load only for math).
"""
