"""Loaders for the staged benchmark files: one uniform `EvalItem` per problem, with a fixed prompt format per task.

Every item carries two prompts: `prompt`, a completion-style text for base models (few-shot where the benchmark
defines it: GSM8K 8-shot from the *train* split, MBPP 3-shot from its prompt split), and `messages`, a zero-shot chat
turn for instruct/reasoning models that asks for a `\\boxed{}` answer, an "Answer: X" letter or a ```python block.
The formats are versioned (`PROMPT_VERSION`); change the version when a format changes so old results are not mixed
with new ones.

The files live in the shared data directory (`data_dir` argument, else `$NANO2_SHARED_DATA`, else `../shared/data`
beside the repository). They are evaluation data: `EVAL_ONLY` and `eval_files()` name them so curation and mixing can
refuse them and decontaminate training text against them.
"""

from __future__ import annotations

import gzip
import inspect
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nano2.errors import Nano2Error
from verify.gsm8k import require_gsm8k_gold

PROMPT_VERSION = "v1"
REPO = Path(__file__).resolve().parent.parent
Kind = Literal["math", "choice", "code"]

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_LETTERS = "ABCDEFGHIJ"
MMLU_HEADER = "The following are multiple choice questions (with answers) about {subject}."

# Files that must never enter training or mixing data (SOURCES.md: test splits and "evaluation only" problems).
EVAL_ONLY: frozenset[str] = frozenset(
    {
        "evals/aime24_test.jsonl",
        "evals/aime25_test.jsonl",
        "evals/amc23_test.jsonl",
        "evals/gsm8k_test.jsonl",
        "evals/hmmt25_feb_test.jsonl",
        "evals/humaneval.jsonl.gz",
        "evals/ifeval_input_data.jsonl",
        "evals/ifeval_oracle_Qwen_Qwen2.5-7B-Instruct-GPTQ-Int4_loose.jsonl.gz",
        "evals/ifeval_oracle_Qwen_Qwen2.5-7B-Instruct-GPTQ-Int4_strict.jsonl.gz",
        "evals/math500_test.jsonl",
        "evals/mbpp_sanitized.json",
        "evals/minerva_math_test.jsonl",
        "evals/mmlu_stem_test.jsonl",
        *(
            f"multilingual/mgsm_{lang}.tsv"
            for lang in ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
        ),
        *(f"multilingual/m_ifeval_{lang}_input_data.jsonl" for lang in ("es", "fr", "ja")),
    }
)
# Files that hold evaluation rows beside training rows: decontaminate against them, train only on the named split.
MIXED_SPLIT_FILES: Mapping[str, str] = {
    "evals/mbpp_full.jsonl": "task_ids 11-510 (test) and 511-600 (validation) are evaluation; 601-974 are training",
}

MGSM_LANGUAGES: tuple[str, ...] = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
# The question/answer words of MGSM's native chain-of-thought exemplars (Shi et al. 2022), one pair per language.
MGSM_NATIVE_WORDS: Mapping[str, tuple[str, str]] = {
    "bn": ("প্রশ্ন:", "ধাপে ধাপে উত্তর:"),
    "de": ("Frage:", "Schritt-für-Schritt-Antwort:"),
    "en": ("Question:", "Step-by-Step Answer:"),
    "es": ("Pregunta:", "Respuesta paso a paso:"),
    "fr": ("Question :", "Réponse étape par étape :"),
    "ja": ("問題：", "ステップごとの答え："),
    "ru": ("Задача:", "Пошаговое решение:"),
    "sw": ("Swali:", "Jibu la Hatua kwa Hatua:"),
    "te": ("ప్రశ్న:", "దశలవారీగా సమాధానం:"),
    "th": ("โจทย์:", "คำตอบทีละขั้นตอน:"),
    "zh": ("问题：", "逐步解答："),
}

MBPP_SPLITS: Mapping[str, tuple[int, int]] = {
    "prompt": (1, 10),
    "test": (11, 510),
    "validation": (511, 600),
    "train": (601, 974),
}
MBPP_FEWSHOT_IDS = (2, 3, 4)  # the three prompt-split exemplars of the MBPP paper
GSM8K_FEWSHOT = 8
HUMANEVAL_STOP = ("\nclass ", "\ndef ", "\n#", "\nif __name__", "\nprint(")


@dataclass(frozen=True)
class EvalItem:
    """One benchmark problem in a uniform shape.

    `answer` is the gold final answer (math: LaTeX or number text; choice: a letter). `reference` is the gold
    worked solution or canonical code where the file has one. For code items the program run in the sandbox is
    `preamble` (MBPP test imports), then the solution, then `tests`; `entry_point` is the function under test
    (HumanEval). `stop` belongs to the completion prompt (give it to the backend as stop strings).
    """

    id: str
    benchmark: str
    kind: Kind
    prompt: str
    messages: tuple[Mapping[str, str], ...]
    answer: str | None = None
    reference: str | None = None
    tests: str | None = None
    preamble: str = ""
    entry_point: str | None = None
    stop: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _user(content: str) -> tuple[Mapping[str, str], ...]:
    return ({"role": "user", "content": content},)


# ---------------------------------------------------------------------------------------------------------------------
# Locating and reading files
# ---------------------------------------------------------------------------------------------------------------------


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The shared data directory: the argument, else $NANO2_SHARED_DATA, else ../shared/data beside the repo."""
    if data_dir is not None:
        path, origin = Path(data_dir), "the data_dir argument"
    elif os.environ.get("NANO2_SHARED_DATA"):
        path, origin = Path(os.environ["NANO2_SHARED_DATA"]), "$NANO2_SHARED_DATA"
    else:
        path, origin = REPO.parent / "shared" / "data", "the default ../shared/data"
    if not path.is_dir():
        raise Nano2Error(
            f"benchmark data directory {path} (from {origin}) does not exist; pass a data dir or set NANO2_SHARED_DATA"
        )
    return path


def benchmark_path(relative: str, data_dir: str | Path | None = None) -> Path:
    """The path of one staged file (e.g. "evals/gsm8k_test.jsonl"), with a clear error when it is missing."""
    root = resolve_data_dir(data_dir)
    path = root / relative
    if not path.is_file():
        raise Nano2Error(f"benchmark file {relative} not found under {root} (see SOURCES.md there)")
    return path


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def read_jsonl(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """JSON lines (plain or .gz); a malformed line or a missing field is an error naming the file and line."""
    rows = []
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise Nano2Error(f"{path}:{number}: malformed JSON ({exc.msg})") from None
            _check_fields(row, required, f"{path}:{number}")
            rows.append(row)
    return rows


def _check_fields(row: Any, required: tuple[str, ...], where: str) -> None:
    if not isinstance(row, dict):
        raise Nano2Error(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [name for name in required if name not in row]
    if missing:
        raise Nano2Error(f"{where}: missing field(s) {', '.join(missing)}")


def eval_files(data_dir: str | Path | None = None) -> list[Path]:
    """Every staged file holding evaluation rows (EVAL_ONLY plus mixed-split files) that exists: decontaminate
    training text against these and never mix them into training data."""
    root = resolve_data_dir(data_dir)
    return [root / rel for rel in sorted(EVAL_ONLY | set(MIXED_SPLIT_FILES)) if (root / rel).is_file()]


def is_eval_file(path: str | Path, data_dir: str | Path | None = None) -> bool:
    """Whether a path is one of the evaluation files (by location under the data dir, or by its file name)."""
    candidate = Path(path)
    names = {Path(rel).name for rel in EVAL_ONLY | set(MIXED_SPLIT_FILES)}
    if candidate.name in names:
        return True
    try:
        root = resolve_data_dir(data_dir).resolve()
        relative = candidate.resolve().relative_to(root).as_posix()
    except (Nano2Error, ValueError, OSError):
        return False
    return relative in EVAL_ONLY or relative in MIXED_SPLIT_FILES


# ---------------------------------------------------------------------------------------------------------------------
# Math
# ---------------------------------------------------------------------------------------------------------------------


def strip_calculator_annotations(solution: str) -> str:
    """GSM8K solutions mark calculator calls as <<48/2=24>>; the few-shot exemplars show the plain text."""
    out, index = [], 0
    while True:
        start = solution.find("<<", index)
        end = solution.find(">>", start + 2) if start >= 0 else -1
        if start < 0 or end < 0:
            out.append(solution[index:])
            return "".join(out)
        out.append(solution[index:start])
        index = end + 2


def gsm8k_fewshot_prefix(data_dir: str | Path | None = None, shots: int = GSM8K_FEWSHOT) -> str:
    """The first `shots` train problems as "Question: ...\\nAnswer: ..." blocks (a fixed, seed-free choice)."""
    if shots <= 0:
        return ""
    train = read_jsonl(benchmark_path("evals/gsm8k_train.jsonl.gz", data_dir), ("question", "answer"))
    blocks = [
        f"Question: {row['question'].strip()}\nAnswer: {strip_calculator_annotations(row['answer']).strip()}"
        for row in train[:shots]
    ]
    return "\n\n".join(blocks) + "\n\n"


def load_gsm8k(
    data_dir: str | Path | None = None, split: Literal["test", "train"] = "test", shots: int = GSM8K_FEWSHOT
) -> list[EvalItem]:
    """GSM8K (1319 test / 7473 train): 8-shot "Question/Answer" prompt from the train split; gold = the #### number."""
    relative = {"test": "evals/gsm8k_test.jsonl", "train": "evals/gsm8k_train.jsonl.gz"}[split]
    rows = read_jsonl(benchmark_path(relative, data_dir), ("question", "answer"))
    prefix = gsm8k_fewshot_prefix(data_dir, shots)
    return [
        EvalItem(
            id=f"gsm8k/{split}/{index}",
            benchmark="gsm8k",
            kind="math",
            prompt=f"{prefix}Question: {row['question'].strip()}\nAnswer:",
            messages=_user(f"{row['question'].strip()}\n{BOXED_INSTRUCTION}"),
            answer=require_gsm8k_gold(row["answer"]),
            reference=row["answer"],
            stop=("\nQuestion:",),
            metadata={"split": split, "shots": shots, "prompt_version": PROMPT_VERSION},
        )
        for index, row in enumerate(rows)
    ]


def _answer_text(value: Any) -> str:
    """Gold answers as text: AMC's 27.0 becomes "27"; strings are kept as written."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _math_item(benchmark: str, native_id: Any, problem: str, answer: str, reference: str | None, **meta) -> EvalItem:
    return EvalItem(
        id=f"{benchmark}/{native_id}",
        benchmark=benchmark,
        kind="math",
        prompt=f"Problem:\n{problem.strip()}\n\nSolution:",
        messages=_user(f"{problem.strip()}\n{BOXED_INSTRUCTION}"),
        answer=answer,
        reference=reference,
        stop=("\nProblem:",),
        metadata={**meta, "prompt_version": PROMPT_VERSION},
    )


def _load_problem_answer(benchmark: str, relative: str, data_dir: str | Path | None) -> list[EvalItem]:
    rows = read_jsonl(benchmark_path(relative, data_dir), ("problem", "answer"))
    return [
        _math_item(
            benchmark,
            row.get("id", index),
            row["problem"],
            _answer_text(row["answer"]),
            row.get("solution"),
            **({"url": row["url"]} if "url" in row else {}),
        )
        for index, row in enumerate(rows)
    ]


def load_math500(data_dir: str | Path | None = None) -> list[EvalItem]:
    """MATH-500 (500; problem and answer only)."""
    return _load_problem_answer("math500", "evals/math500_test.jsonl", data_dir)


def load_aime24(data_dir: str | Path | None = None) -> list[EvalItem]:
    """AIME 2024 I+II (30; with AoPS solutions)."""
    return _load_problem_answer("aime24", "evals/aime24_test.jsonl", data_dir)


def load_aime25(data_dir: str | Path | None = None) -> list[EvalItem]:
    """AIME 2025 I+II (30)."""
    return _load_problem_answer("aime25", "evals/aime25_test.jsonl", data_dir)


def load_amc23(data_dir: str | Path | None = None) -> list[EvalItem]:
    """AMC 2023 (40; answers stored as floats, given here as integer text)."""
    return _load_problem_answer("amc23", "evals/amc23_test.jsonl", data_dir)


def load_hmmt25(data_dir: str | Path | None = None) -> list[EvalItem]:
    """HMMT February 2025 (30)."""
    return _load_problem_answer("hmmt25", "evals/hmmt25_feb_test.jsonl", data_dir)


def load_minerva_math(data_dir: str | Path | None = None) -> list[EvalItem]:
    """Minerva OCW problems (272): the gold answer is the last \\boxed{} of the reference solution."""
    from verify.math import last_boxed

    path = benchmark_path("evals/minerva_math_test.jsonl", data_dir)
    items = []
    for index, row in enumerate(read_jsonl(path, ("problem", "solution"))):
        answer = last_boxed(row["solution"])
        if answer is None:
            raise Nano2Error(f"{path}:{index + 1}: solution has no \\boxed{{}} answer")
        native_id = row.get("idx", index)
        items.append(
            _math_item("minerva_math", native_id, row["problem"], answer, row["solution"], course=row.get("type"))
        )
    return items


def _read_mgsm(path: Path) -> Iterator[tuple[int, str, str]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise Nano2Error(f"{path}:{number}: expected 'question<TAB>answer', got {len(parts)} field(s)")
            yield number, parts[0].strip(), parts[1].strip()


def load_mgsm(data_dir: str | Path | None = None, languages: tuple[str, ...] = MGSM_LANGUAGES) -> list[EvalItem]:
    """MGSM (250 problems x 11 languages), zero-shot; the completion prompt uses the language's own Q/A words.

    Rows are aligned across languages (row i is the same GSM8K test problem), so `metadata["problem"]` is the row
    index and per-language accuracies are comparable.
    """
    unknown = [lang for lang in languages if lang not in MGSM_LANGUAGES]
    if unknown:
        raise Nano2Error(f"unknown MGSM language(s) {unknown}; expected some of {list(MGSM_LANGUAGES)}")
    items = []
    for lang in languages:
        question_word, answer_word = MGSM_NATIVE_WORDS[lang]
        for index, (_, question, answer) in enumerate(
            _read_mgsm(benchmark_path(f"multilingual/mgsm_{lang}.tsv", data_dir))
        ):
            items.append(
                EvalItem(
                    id=f"mgsm/{lang}/{index}",
                    benchmark=f"mgsm_{lang}",
                    kind="math",
                    prompt=f"{question_word} {question}\n{answer_word}",
                    messages=_user(f"{question}\n{BOXED_INSTRUCTION}"),
                    answer=answer,
                    stop=(f"\n{question_word}",),
                    metadata={"language": lang, "problem": index, "prompt_version": PROMPT_VERSION},
                )
            )
    return items


# ---------------------------------------------------------------------------------------------------------------------
# Multiple choice
# ---------------------------------------------------------------------------------------------------------------------


def format_choices(choices: list[str]) -> str:
    return "\n".join(f"{CHOICE_LETTERS[index]}. {str(choice).strip()}" for index, choice in enumerate(choices))


def load_mmlu_stem(data_dir: str | Path | None = None) -> list[EvalItem]:
    """MMLU STEM subjects (3018, four choices), zero-shot in the standard MMLU layout; gold = the letter."""
    path = benchmark_path("evals/mmlu_stem_test.jsonl", data_dir)
    items = []
    for index, row in enumerate(read_jsonl(path, ("question", "choices", "answer", "type"))):
        choices, gold = row["choices"], row["answer"]
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(CHOICE_LETTERS):
            raise Nano2Error(f"{path}:{index + 1}: choices must be a list of 2-{len(CHOICE_LETTERS)} options")
        if not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise Nano2Error(f"{path}:{index + 1}: answer {gold!r} is not an index into the {len(choices)} choices")
        subject = row["type"].replace("_", " ")
        letters = ", ".join(CHOICE_LETTERS[: len(choices)])
        body = f"{row['question'].strip()}\n{format_choices(choices)}"
        items.append(
            EvalItem(
                id=f"mmlu_stem/{index}",
                benchmark="mmlu_stem",
                kind="choice",
                prompt=f"{MMLU_HEADER.format(subject=subject)}\n\n{body}\nAnswer:",
                messages=_user(
                    f"{body}\n\nAnswer the multiple choice question above. End your response with a line of the form "
                    f"'Answer: X' where X is one of {letters}."
                ),
                answer=CHOICE_LETTERS[gold],
                stop=("\n",),
                metadata={"subject": row["type"], "choices": list(choices), "prompt_version": PROMPT_VERSION},
            )
        )
    return items


# ---------------------------------------------------------------------------------------------------------------------
# Code
# ---------------------------------------------------------------------------------------------------------------------


def load_humaneval(data_dir: str | Path | None = None) -> list[EvalItem]:
    """HumanEval (164): complete the function from its signature and docstring; tests call check(entry_point)."""
    path = benchmark_path("evals/humaneval.jsonl.gz", data_dir)
    items = []
    for row in read_jsonl(path, ("task_id", "prompt", "canonical_solution", "test", "entry_point")):
        items.append(
            EvalItem(
                id=row["task_id"],
                benchmark="humaneval",
                kind="code",
                prompt=row["prompt"],
                messages=_user(
                    "Complete the following Python function. Reply with the complete function, signature included, "
                    f"in a single ```python code block.\n\n```python\n{row['prompt'].rstrip()}\n```"
                ),
                reference=row["canonical_solution"],
                tests=f"{row['test']}\n\ncheck({row['entry_point']})\n",
                entry_point=row["entry_point"],
                stop=HUMANEVAL_STOP,
                metadata={"task_id": row["task_id"], "prompt_version": PROMPT_VERSION},
            )
        )
    return items


def _mbpp_task_text(text: str, tests: list[str]) -> str:
    return (
        f"You are an expert Python programmer, and here is your task: {text.strip()} "
        "Your code should pass these tests:\n\n" + "\n".join(tests) + "\n"
    )


def _mbpp_rows(variant: Literal["sanitized", "full"], data_dir: str | Path | None) -> list[dict[str, Any]]:
    """Rows as {task_id, text, code, test_list, imports, setup} (imports run before the solution, setup after)."""
    if variant == "sanitized":
        path = benchmark_path("evals/mbpp_sanitized.json", data_dir)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise Nano2Error(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(raw, list):
            raise Nano2Error(f"{path}: expected a JSON array of tasks")
        rows = []
        for index, row in enumerate(raw):
            _check_fields(row, ("task_id", "prompt", "code", "test_list", "test_imports"), f"{path}[{index}]")
            rows.append(
                {
                    "task_id": row["task_id"],
                    "text": row["prompt"],
                    "code": row["code"],
                    "test_list": row["test_list"],
                    "imports": "\n".join(row["test_imports"]),
                    "setup": "",
                }
            )
        return rows
    path = benchmark_path("evals/mbpp_full.jsonl", data_dir)
    return [
        {
            "task_id": row["task_id"],
            "text": row["text"],
            "code": row["code"].replace("\r\n", "\n"),
            "test_list": row["test_list"],
            "imports": "",
            "setup": row.get("test_setup_code", "").replace("\r\n", "\n"),
        }
        for row in read_jsonl(path, ("task_id", "text", "code", "test_list"))
    ]


def load_mbpp(
    data_dir: str | Path | None = None,
    variant: Literal["sanitized", "full"] = "sanitized",
    split: Literal["test", "validation", "train", "prompt", "all"] = "test",
    shots: int = 3,
) -> list[EvalItem]:
    """MBPP (sanitized: 257 test of 427; full: 500 test of 974) in the standard "[BEGIN] ... [DONE]" prompt.

    The completion prompt shows the three prompt-split exemplars (task ids 2, 3, 4) then the task with its tests.
    The program is the sanitized file's test_imports, the solution, the full file's test_setup_code (it builds
    objects from the solution's classes), then the asserts.
    """
    if split != "all" and split not in MBPP_SPLITS:
        raise Nano2Error(f"unknown MBPP split {split!r}; expected one of {[*MBPP_SPLITS, 'all']}")
    rows = _mbpp_rows(variant, data_dir)
    by_id = {row["task_id"]: row for row in rows}
    exemplars = [by_id[task_id] for task_id in MBPP_FEWSHOT_IDS[:shots] if task_id in by_id]
    if len(exemplars) < min(shots, len(MBPP_FEWSHOT_IDS)):
        raise Nano2Error(f"MBPP {variant}: few-shot exemplars {MBPP_FEWSHOT_IDS[:shots]} are not all in the file")
    prefix = "".join(
        f"{_mbpp_task_text(row['text'], row['test_list'])}[BEGIN]\n{row['code'].strip()}\n[DONE]\n\n"
        for row in exemplars
    )
    low, high = MBPP_SPLITS.get(split, (0, 10**9))
    items = []
    for row in rows:
        if not low <= row["task_id"] <= high:
            continue
        task = _mbpp_task_text(row["text"], row["test_list"])
        setup = row["setup"].strip()
        asserts = "\n".join(row["test_list"])
        items.append(
            EvalItem(
                id=f"mbpp_{variant}/{row['task_id']}",
                benchmark=f"mbpp_{variant}" if variant == "full" else "mbpp",
                kind="code",
                prompt=f"{prefix}{task}[BEGIN]\n",
                messages=_user(f"{task}\nReply with the Python code in a single ```python code block."),
                reference=row["code"],
                tests=f"{setup}\n\n{asserts}\n" if setup else f"{asserts}\n",
                preamble=row["imports"],
                stop=("[DONE]",),
                metadata={
                    "task_id": row["task_id"],
                    "variant": variant,
                    "split": split,
                    "prompt_version": PROMPT_VERSION,
                },
            )
        )
    return items


def load_mbpp_full(
    data_dir: str | Path | None = None,
    split: Literal["test", "validation", "train", "prompt", "all"] = "test",
    shots: int = 3,
) -> list[EvalItem]:
    """The full MBPP file (974 tasks; 500 in the test split)."""
    return load_mbpp(data_dir, variant="full", split=split, shots=shots)


# ---------------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: Kind
    files: tuple[str, ...]
    load: Callable[..., list[EvalItem]]


BENCHMARKS: Mapping[str, Benchmark] = {
    "gsm8k": Benchmark("gsm8k", "math", ("evals/gsm8k_test.jsonl", "evals/gsm8k_train.jsonl.gz"), load_gsm8k),
    "math500": Benchmark("math500", "math", ("evals/math500_test.jsonl",), load_math500),
    "aime24": Benchmark("aime24", "math", ("evals/aime24_test.jsonl",), load_aime24),
    "aime25": Benchmark("aime25", "math", ("evals/aime25_test.jsonl",), load_aime25),
    "amc23": Benchmark("amc23", "math", ("evals/amc23_test.jsonl",), load_amc23),
    "hmmt25": Benchmark("hmmt25", "math", ("evals/hmmt25_feb_test.jsonl",), load_hmmt25),
    "minerva_math": Benchmark("minerva_math", "math", ("evals/minerva_math_test.jsonl",), load_minerva_math),
    "mgsm": Benchmark("mgsm", "math", tuple(f"multilingual/mgsm_{lang}.tsv" for lang in MGSM_LANGUAGES), load_mgsm),
    "mmlu_stem": Benchmark("mmlu_stem", "choice", ("evals/mmlu_stem_test.jsonl",), load_mmlu_stem),
    "humaneval": Benchmark("humaneval", "code", ("evals/humaneval.jsonl.gz",), load_humaneval),
    "mbpp": Benchmark("mbpp", "code", ("evals/mbpp_sanitized.json",), load_mbpp),
    "mbpp_full": Benchmark("mbpp_full", "code", ("evals/mbpp_full.jsonl",), load_mbpp_full),
}


def load_benchmark(name: str, data_dir: str | Path | None = None, **options: Any) -> list[EvalItem]:
    """Load a benchmark by name (see BENCHMARKS); options go to its loader (split, shots, languages, ...)."""
    if name not in BENCHMARKS:
        raise Nano2Error(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)}")
    loader = BENCHMARKS[name].load
    try:
        inspect.signature(loader).bind(data_dir, **options)
    except TypeError as exc:
        raise Nano2Error(f"benchmark {name}: bad option(s) {sorted(options)} ({exc})") from None
    return loader(data_dir, **options)
