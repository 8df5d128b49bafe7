"""Peak memory of the corpus-wide thresholds step (`fit_corpus_thresholds`) at 1M and 10M score rows.

The claim under test: the polars scan streams the score shards and keeps one row per occupied 1e-6 score cell,
so peak memory does not grow with the number of documents. Each size gets its own score shards (1M rows each:
ids, token counts, two classifiers' unrounded scores, as the scoring step writes them) and a fresh interpreter
whose peak RSS (`ru_maxrss`) is reported, beside the same interpreter's peak after the imports alone.

    .venv/bin/python benchmarks/bench_thresholds_memory.py [--rows 1000000 10000000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cputime import measure_python

SHARD_ROWS = 1_000_000
CLASSIFIERS = ["a", "b"]


def make_scores(folder: str, rows: int, seed: int = 0) -> int:
    """Write `rows` score rows as 1M-row shards, as `ScoreShards` lays them out."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    Path(folder).mkdir(parents=True, exist_ok=True)
    for rank, start in enumerate(range(0, rows, SHARD_ROWS)):
        n = min(SHARD_ROWS, rows - start)
        table = pa.table({
            "id": pa.array(np.char.add("d", np.arange(start, start + n).astype(str))),
            "token_count": rng.integers(50, 5000, n),
            "language": pa.array(["en"] * n),
            **{f"score:{c}": rng.beta(2, 5, n) for c in CLASSIFIERS},
        })  # fmt: skip
        pq.write_table(table, Path(folder) / f"{rank:05d}.parquet")
    return rows


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def imports_only() -> dict:
    import polars  # noqa: F401

    import curation.quality.thresholds  # noqa: F401

    return {"peak_mib": _peak_mib()}


def fit(folder: str) -> dict:
    from curation.quality.thresholds import fit_corpus_thresholds

    files = sorted(str(p) for p in Path(folder).glob("*.parquet"))
    fitted = fit_corpus_thresholds(files, CLASSIFIERS)
    return {
        "peak_mib": _peak_mib(),
        "documents": fitted.source.documents,
        "cut_a_10": fitted.classifiers["a"].cut_points[9],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    base = measure_python("bench_thresholds_memory:imports_only", repeats=args.repeats, name="imports")
    print(f"imports only: peak RSS {max(r.result['peak_mib'] for r in base.runs):.0f} MiB")
    for rows in args.rows:
        tmp = tempfile.mkdtemp(prefix="nano2-scores-")
        try:
            make_scores(tmp, rows)
            size = sum(p.stat().st_size for p in Path(tmp).glob("*.parquet")) / 2**20
            runs = measure_python("bench_thresholds_memory:fit", [tmp], repeats=args.repeats, name=f"fit {rows:,}")
            peaks = [r.result["peak_mib"] for r in runs.runs]
            assert all(r.result["documents"] == rows for r in runs.runs)
            print(f"{rows:>12,} score rows ({size:.0f} MiB of shards): peak RSS {min(peaks):.0f}-{max(peaks):.0f} MiB, "
                  f"CPU {runs.describe()}")  # fmt: skip
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
