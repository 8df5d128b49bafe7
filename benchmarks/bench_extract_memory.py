"""Peak memory of the web pipeline's extract stage (read -> URL filter -> extraction -> language ID -> heuristics ->
token counts -> signatures -> working JSONL) on one WARC file of 50 MB and of 500 MB, one task.

The claim under test: records stream through the stage, so peak memory does not grow with the size of the file.
The input is the two real WARC samples of ../shared/data/web concatenated (gzip members) until the file reaches the
size asked for, written to a temporary folder outside the repository. The stage runs in a child process (with
the extraction sandbox's own child); the whole process tree's resident memory is sampled every 50 ms with psutil
and its peak reported, beside the peak of the largest single process (`ru_maxrss` of the children).

    .venv/bin/python benchmarks/bench_extract_memory.py [--sizes-mb 50 500] [--tmp /tmp]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def make_warc(shared: Path, out: Path, size_mb: float) -> int:
    """Concatenate the real WARC samples into `out` until it holds `size_mb` MB; return the records written."""
    samples = [p.read_bytes() for p in sorted((shared / "web").glob("*.warc.gz"))]
    target = int(size_mb * 1_000_000)
    written = repeats = 0
    with open(out, "wb") as fh:
        while written < target:
            for data in samples:
                fh.write(data)
                written += len(data)
            repeats += 1
    return repeats


def extract_stage(config: str) -> None:
    """Run the extract stage of `config` alone (the stage this benchmark measures)."""
    from curation.stages import run_stages
    from curation.web.config import load_web_config
    from curation.web.pipeline import build_stages

    cfg = load_web_config(config)
    stages = build_stages(cfg, cfg.work / "thresholds.json")
    run_stages([stages[0]], cfg.executor)


def tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def measure(shared: Path, tmp: Path, size_mb: float) -> tuple[int, int, float, float]:
    """(peak tree RSS, peak single-process RSS, file MB, wall seconds) of the extract stage on a `size_mb` file."""
    folder = Path(tempfile.mkdtemp(prefix=f"extract-mem-{int(size_mb)}mb-", dir=tmp))
    try:
        (folder / "in").mkdir()
        make_warc(shared, folder / "in" / "big.warc.gz", size_mb)
        file_mb = (folder / "in" / "big.warc.gz").stat().st_size / 1e6
        cfg = {
            "name": "mem", "output_dir": str(folder / "out"), "work_dir": str(folder / "work"),
            "inputs": [{"kind": "warc", "path": str(folder / "in"), "glob": "*.warc.gz"}],
            "executor": {"kind": "local", "tasks": 1, "workers": 1},
            "url_filter": {"use_integrated_lists": False}, "quality": {"classifiers": []},
        }  # fmt: skip
        config = folder / "web.yaml"
        config.write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        code = f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); " \
               f"from bench_extract_memory import extract_stage; extract_stage({str(config)!r})"  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)  # fmt: skip
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        if proc.returncode != 0:
            raise RuntimeError(f"extract stage exited {proc.returncode}:\n{err[-3000:]}")
        single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        return peak, single, file_mb, wall
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[50, 500])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("NANO2_SHARED_DATA", "../shared/data")))
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    for size in args.sizes_mb:
        peak, single, file_mb, wall = measure(args.shared, args.tmp, size)
        print(f"{file_mb:8.1f} MB WARC: peak RSS of the process tree {peak / 2**20:7.1f} MiB, "
              f"largest process so far {single / 2**20:7.1f} MiB ({wall:.0f} s wall)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
