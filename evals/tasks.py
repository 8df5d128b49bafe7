"""Benchmark items as tasks: the prompt each configured benchmark sends, and the item that scores the answer.

One shape for every benchmark (math, multiple choice, code, IFEval) so that planning, scoring and summaries need
not know which loader an item came from; `limit` and `ids` select items the same way everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evals.config import BenchmarkConfig
from nano2.errors import Nano2Error

Kind = Literal["math", "choice", "code", "ifeval"]
IFEVAL_LANGUAGES = ("es", "fr", "ja")


@dataclass(frozen=True)
class Task:
    """One item of a configured benchmark, with the prompt to send and what scores it.

    `family` is the configured benchmark ("mgsm"), `group` the summary row the item counts in ("mgsm_de").
    """

    family: str
    group: str
    item_id: str
    kind: Kind
    messages: tuple[Mapping[str, str], ...]
    prompt: str
    stop: tuple[str, ...]
    item: Any  # evals.benchmarks.EvalItem or evals.ifeval.IFEvalItem


def _ifeval_tasks(spec: BenchmarkConfig, data_dir: str | Path | None) -> list[Task]:
    from evals.benchmarks import benchmark_path
    from evals.ifeval import load_items

    if spec.name == "ifeval":
        if spec.options:
            raise Nano2Error(f"benchmark ifeval: takes no options, got {sorted(spec.options)}")
        files = [("ifeval", "ifeval", "evals/ifeval_input_data.jsonl")]
    else:
        unknown = sorted(set(spec.options) - {"languages"})
        if unknown:
            raise Nano2Error(f"benchmark m_ifeval: unknown option(s) {unknown}; expected: languages")
        languages = tuple(spec.options.get("languages", IFEVAL_LANGUAGES))
        bad = [lang for lang in languages if lang not in IFEVAL_LANGUAGES]
        if bad:
            raise Nano2Error(f"m_ifeval: unknown language(s) {bad}; expected some of {list(IFEVAL_LANGUAGES)}")
        files = [
            (f"m_ifeval_{lang}", f"m_ifeval/{lang}", f"multilingual/m_ifeval_{lang}_input_data.jsonl")
            for lang in languages
        ]
    tasks = []
    for group, prefix, relative in files:
        for item in load_items(benchmark_path(relative, data_dir)):
            messages = ({"role": "user", "content": item.prompt},)
            tasks.append(Task(spec.name, group, f"{prefix}/{item.key}", "ifeval", messages, item.prompt, (), item))
    return tasks


def benchmark_files(spec: BenchmarkConfig, data_dir: str | Path | None) -> list[Path]:
    """The staged files a benchmark reads (the run's manifest inputs)."""
    from evals.benchmarks import BENCHMARKS, MGSM_LANGUAGES, benchmark_path

    if spec.name == "ifeval":
        relatives: Sequence[str] = ["evals/ifeval_input_data.jsonl"]
    elif spec.name == "m_ifeval":
        languages = spec.options.get("languages", IFEVAL_LANGUAGES)
        relatives = [f"multilingual/m_ifeval_{lang}_input_data.jsonl" for lang in languages]
    elif spec.name == "mgsm":
        relatives = [f"multilingual/mgsm_{lang}.tsv" for lang in spec.options.get("languages", MGSM_LANGUAGES)]
    else:
        relatives = BENCHMARKS[spec.name].files
    return [benchmark_path(relative, data_dir) for relative in relatives]


def load_tasks(spec: BenchmarkConfig, data_dir: str | Path | None = None) -> list[Task]:
    """The items of one configured benchmark: `limit` first items per group, then `ids` if given (file order kept)."""
    from evals.benchmarks import load_benchmark

    if spec.name in ("ifeval", "m_ifeval"):
        tasks = _ifeval_tasks(spec, data_dir)
    else:
        options = dict(spec.options)
        if "languages" in options:
            options["languages"] = tuple(options["languages"])
        tasks = [
            Task(spec.name, item.benchmark, item.id, item.kind, tuple(item.messages), item.prompt, item.stop, item)
            for item in load_benchmark(spec.name, data_dir, **options)
        ]
    if spec.limit is not None:
        taken: dict[str, int] = defaultdict(int)
        limited = []
        for task in tasks:
            if taken[task.group] < spec.limit:
                taken[task.group] += 1
                limited.append(task)
        tasks = limited
    if spec.ids:
        by_id = {task.item_id: task for task in tasks}
        missing = [item_id for item_id in spec.ids if item_id not in by_id]
        if missing:
            example = ", ".join(list(by_id)[:3])
            raise Nano2Error(f"benchmark {spec.name}: item id(s) {missing} not found (ids look like: {example})")
        wanted = set(spec.ids)
        tasks = [task for task in tasks if task.item_id in wanted]
    if not tasks:
        raise Nano2Error(f"benchmark {spec.name}: no items selected")
    return tasks
