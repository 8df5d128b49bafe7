"""Everything `bench_web.py`'s run of our pipeline produces, as one comparable JSON digest: the documents of every
artifact and the decisions (all columns, rows sorted), and the manifests without the fields that name the run
rather than the result (`id`, `created_at`, `code`). Two code versions that should give the same results must give
the same digest on the same input.

Usage: python benchmarks/web_outputs_digest.py OUT.json [--repeat 20] [--workers 2]
       python benchmarks/web_outputs_digest.py --compare A.json B.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

MANIFEST_RUN_FIELDS = ("id", "created_at", "code")
FIXED_MTIME = 1_700_000_000  # the inputs' mtime (part of the run fingerprint), so that two runs compare


def digest_outputs(curated: Path) -> dict:
    """Manifests (less the run's own fields) and the rows of every Parquet shard under `curated`."""
    out: dict = {}
    for manifest in sorted(curated.rglob("manifest.json")):
        body = json.loads(manifest.read_text())
        for key in MANIFEST_RUN_FIELDS:
            body.pop(key, None)
        body.get("producer", {}).pop("command", None)  # the digest's own command line
        out[f"manifest:{manifest.relative_to(curated)}"] = body
    for shard in sorted(curated.rglob("*.parquet")):
        out[f"rows:{shard.relative_to(curated)}"] = parquet_rows(shard)
    return out


def parquet_rows(path: Path) -> dict:
    """Row count and a hash of the rows (sorted, all columns) of one Parquet file."""
    import pyarrow.parquet as pq

    rows = sorted(
        json.dumps(r, sort_keys=True, default=str) for r in pq.read_table(path, partitioning=None).to_pylist()
    )
    return {"rows": len(rows), "sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest()}


def digest_work(work: Path) -> dict:
    """Every intermediate file of the run (JSONL, signatures, duplicates, scores) by content hash; datatrove's logs
    (timings) left out, gzip members compared decompressed (their header holds a time)."""
    import gzip

    out = {}
    for path in sorted(p for p in work.rglob("*") if p.is_file() and "logs" not in p.relative_to(work).parts):
        if path.suffix == ".parquet":  # score shards
            out[f"work:{path.relative_to(work)}"] = parquet_rows(path)
            continue
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        out[f"work:{path.relative_to(work)}"] = hashlib.sha256(data).hexdigest()
    return out


def compare(a, b, where: str = "") -> list[str]:
    """Paths (`key/key/index`) where two digests differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                diffs.append(f"{where}/{key}: only in {'A' if key in a else 'B'}")
            else:
                diffs += compare(a[key], b[key], f"{where}/{key}")
        return diffs
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in compare(x, y, f"{where}/{i}")]
    if a != b:
        return [f"{where}:\n  A: {json.dumps(a)[:500]}\n  B: {json.dumps(b)[:500]}"]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compare", nargs=2)
    parser.add_argument("--work", default="/tmp/web-outputs-digest", help="run folder (emptied first)")
    args = parser.parse_args()
    if args.compare:
        a, b = (json.loads(Path(p).read_text()) for p in args.compare)
        diffs = compare(a, b)
        print("\n".join(diffs) if diffs else f"identical ({len(a)} entries)")
        sys.exit(1 if diffs else 0)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_web import make_input, run_ours

    from curation.quality.training import tiny_config, train_quality

    shared = Path(os.environ.get("NANO2_SHARED_DATA", "../shared/data")).resolve()
    tmp = Path(args.work)
    shutil.rmtree(tmp, ignore_errors=True)
    make_input(shared, tmp / "input", args.repeat)
    for f in (tmp / "input").iterdir():
        os.utime(f, (FIXED_MTIME, FIXED_MTIME))
    train_quality(tiny_config(), tmp / "quality", data_root=shared)
    # fixed paths inside the digest: the config (and so the manifests) name them
    run_ours(str(tmp / "input"), str(tmp / "ours"), args.workers, str(shared), str(tmp / "quality"))
    digest = digest_outputs(tmp / "ours" / "curated") | digest_work(tmp / "ours" / "work")
    text = json.dumps(digest, indent=1, sort_keys=True)
    Path(args.out).write_text(text)
    print(f"{args.out}: {len(digest)} entries")


if __name__ == "__main__":
    main()
