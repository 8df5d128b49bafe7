"""Train one fastText model in its own process: `python -m curation.quality.fasttext_worker PARAMS.json`.

fastText's trainer keeps global state that sometimes makes a second `train_supervised` in the same process fail
with "Encountered NaN"; a fresh process per model avoids it and also isolates a crash in the C++ code.
PARAMS.json: {"input": train file, "output": model path, "args": fastText keyword arguments}. Exit 0 on success;
on failure the last stderr line says why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def train(params: dict) -> None:
    import fasttext

    model = fasttext.train_supervised(input=params["input"], verbose=0, **params["args"])
    output = Path(params["output"])
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(output))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m curation.quality.fasttext_worker PARAMS.json", file=sys.stderr)
        return 2
    try:
        train(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    except Exception as exc:  # reported to the parent as one line
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
