"""Where the web pipeline's CPU time goes on the dev samples: per stage (whole process tree: the driver, the pool
workers and their sandboxes), per step (datatrove's own step timings, summed over tasks), and the fixed costs
outside documents (imports, code version, manifests).

Runs `bench_web.run_ours` on the same input as `bench_web.py`, in a fresh child, with the stage runner wrapped so
that each stage's CPU (`os.times()` of the driver and its waited-for children) is recorded. With `--cprofile DIR`
every worker task also writes a cProfile dump (`DIR/<stage>-<pid>.prof`) and the driver one of its own.

Usage: python benchmarks/profile_web.py [--repeat 20] [--workers 2] [--cprofile DIR] [--steps]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench_web import CLASSIFIERS, make_input, reference_steps, warm_machine_caches
from cputime import measure_python


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def profiled_ours(input_dir: str, work: str, workers: int, shared: str, quality_dir: str, prof_dir: str) -> dict:
    """`bench_web.run_ours`, with CPU seconds per stage and per phase (run in a child by `measure_python`)."""
    start = _cpu()
    phases: dict[str, float] = {}
    t = _cpu()
    import curation.web.pipeline as pipeline

    phases["import pipeline"] = _cpu() - t
    original_run_stages = pipeline.run_stages
    original_write_manifests = pipeline.write_manifests

    def run_stages(stages, executor, **kw):
        for stage in stages:
            if prof_dir:
                _profile_steps(stage, prof_dir)
            t0 = _cpu()
            original_run_stages([stage], executor, **kw)
            phases[f"stage {stage.name}"] = _cpu() - t0
        return True

    def write_manifests(*a, **kw):
        t0 = _cpu()
        from nano2.manifest import code_version

        code_version()
        phases["code_version"] = _cpu() - t0
        t0 = _cpu()
        out = original_write_manifests(*a, **kw)
        phases["write_manifests"] = _cpu() - t0
        return out

    pipeline.run_stages = run_stages
    pipeline.write_manifests = write_manifests
    import bench_web

    profiler = None
    if prof_dir:
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    t = _cpu()
    bench_web.run_ours(input_dir, work, workers, shared, quality_dir)
    phases["run_ours total"] = _cpu() - t
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(Path(prof_dir) / "driver.prof"))
    phases["process total (after interpreter start)"] = _cpu() - start
    steps = {}
    for log in sorted((Path(work) / "work" / "logs").iterdir()):
        stats = log / "stats.json"
        if stats.exists():
            for step in json.loads(stats.read_text()):
                ts = step.get("time_stats") or {}
                steps[f"{log.name}: {step['name']}"] = ts.get("total", 0.0) if isinstance(ts, dict) else float(ts)
    return {"phases": phases, "steps": steps}


def _profile_steps(stage, prof_dir: str) -> None:
    """Make the stage's first step profile the whole task in its worker (dump at the end of the task)."""
    first = stage.pipeline[0]
    original = first.run
    name = stage.name

    def run(data=None, rank: int = 0, world_size: int = 1):
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        try:
            result = original(data, rank, world_size)
            if result is not None:
                yield from result
        finally:
            profiler.disable()
            profiler.dump_stats(str(Path(prof_dir) / f"{name}-{rank}-{os.getpid()}.prof"))

    first.run = run


def step_cpu(input_dir: str, work: str, shared: str, quality_dir: str) -> dict:
    """CPU seconds of each extract-stage step on the whole input, one step at a time over a materialised list
    (exclusive: process time of this process plus its waited-for children, e.g. the extraction sandbox)."""
    import shutil

    import yaml

    from curation.web.config import load_web_config
    from curation.web.pipeline import build_stages

    out = Path(work)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    banlist = Path(shared) / "web/banlists/refinedweb_banned_words_hard_reverse_engineered.txt"
    cfg = {
        "name": "bench", "output_dir": str(out / "curated"), "work_dir": str(out / "work"),
        "inputs": [{"kind": "warc", "path": input_dir, "glob": "*.warc.gz"}],
        "executor": {"kind": "local", "tasks": 1, "workers": 1},
        "url_filter": {"banned_subwords_files": [str(banlist)]},
        "quality": {"classifiers": [{"name": n, "path": str(Path(quality_dir) / n)} for n in CLASSIFIERS]},
    }  # fmt: skip
    (out / "web.yaml").write_text(yaml.safe_dump(cfg))
    t = _cpu()
    stages = build_stages(load_web_config(out / "web.yaml"), out / "work" / "thresholds.json")
    times = {"build_stages": _cpu() - t}
    docs = None
    for step in stages[0].pipeline:
        t = _cpu()
        docs = list(step.run(iter(docs) if docs is not None else None, 0, 1))
        times[type(step).__name__] = _cpu() - t
    times["documents out"] = len(docs)
    return times


def reference_step_cpu(input_dir: str) -> dict:
    """CPU seconds of each step of the reference pipeline, as `step_cpu` measures ours."""
    steps = reference_steps(input_dir)
    times = {}
    docs = None
    for step in steps:
        t = _cpu()
        docs = list(step.run(iter(docs) if docs is not None else None, 0, 1))
        times[type(step).__name__] = _cpu() - t
    times["documents out"] = len(docs)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cprofile", default="", help="folder for cProfile dumps (driver and every task)")
    parser.add_argument(
        "--steps", action="store_true", help="also each step's own CPU, ours and the reference's, one process each"
    )
    args = parser.parse_args()
    shared = Path(os.environ.get("NANO2_SHARED_DATA", "../shared/data")).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="profile-web-"))
    records = make_input(shared, tmp / "input", args.repeat)
    from curation.quality.training import tiny_config, train_quality

    train_quality(tiny_config(), tmp / "quality", data_root=shared)
    warm_machine_caches()
    if args.cprofile:
        Path(args.cprofile).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NANO2_SHARED_DATA=str(shared))
    noop = measure_python("os:getpid", [], repeats=1, env=env).runs[0].cpu_s
    start = time.perf_counter()
    samples = measure_python(
        "profile_web:profiled_ours",
        [str(tmp / "input"), str(tmp / "ours"), args.workers, str(shared), str(tmp / "quality"), args.cprofile],
        repeats=1,
        env=env,
    )
    run = samples.runs[0]
    print(f"input: {records} records; tree CPU {run.cpu_s:.2f} s, wall {time.perf_counter() - start:.1f} s")
    print(f"  interpreter start (no-op child): {noop:.2f} s")
    for name, cpu in run.result["phases"].items():
        print(f"  {name:45s} {cpu:7.2f} s")
    print("datatrove step time (wall inside steps, summed over tasks):")
    for name, sec in run.result["steps"].items():
        print(f"  {name:70s} {sec:7.2f} s")
    if args.steps:
        print_step_floor(tmp, shared, run.cpu_s, env)


def print_step_floor(tmp: Path, shared: Path, ours_tree_cpu: float, env: dict) -> None:
    """Each step's own CPU, ours (extract stage) and the reference's, and what a 3x ratio would leave for ours."""
    ours = measure_python(
        "profile_web:step_cpu", [str(tmp / "input"), str(tmp / "steps"), str(shared), str(tmp / "quality")],
        repeats=1, env=env,
    ).runs[0]  # fmt: skip
    reference = measure_python("profile_web:reference_step_cpu", [str(tmp / "input")], repeats=1, env=env).runs[0]
    for label, run in (("ours, extract stage", ours), ("reference", reference)):
        print(f"{label} steps, one process (own CPU of each step over the whole input):")
        for name, value in run.result.items():
            print(f"  {name:45s} {value:7.2f}" + ("" if name == "documents out" else " s"))
    ours_steps = sum(v for k, v in ours.result.items() if k not in ("documents out", "build_stages"))
    reference_steps_cpu = sum(v for k, v in reference.result.items() if k != "documents out")
    print(
        f"3x over the reference's steps alone ({reference_steps_cpu:.2f} s) leaves {reference_steps_cpu / 3:.2f} s "
        f"for the whole of ours; our extract-stage steps alone take {ours_steps:.2f} s, the whole run "
        f"{ours_tree_cpu:.2f} s"
    )


if __name__ == "__main__":
    main()
