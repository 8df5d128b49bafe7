"""Benchmark loaders: counts per file as in SOURCES.md, the fixed prompt formats, and clear errors on bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from evals.benchmarks import (
    BENCHMARKS,
    BOXED_INSTRUCTION,
    EVAL_ONLY,
    MGSM_LANGUAGES,
    MIXED_SPLIT_FILES,
    benchmark_path,
    eval_files,
    is_eval_file,
    load_benchmark,
    load_gsm8k,
    load_humaneval,
    load_mbpp,
    load_mgsm,
    load_mmlu_stem,
    resolve_data_dir,
    strip_calculator_annotations,
)
from nano2.errors import Nano2Error

COUNTS = {  # SOURCES.md rows
    "math500": 500,
    "aime24": 30,
    "aime25": 30,
    "amc23": 40,
    "hmmt25": 30,
    "minerva_math": 272,
    "mmlu_stem": 3018,
    "humaneval": 164,
    "mgsm": 250 * 11,
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(COUNTS))
def test_loader_counts_match_sources(shared_data, name):
    items = load_benchmark(name, shared_data)
    assert len(items) == COUNTS[name]
    assert len({item.id for item in items}) == len(items)
    assert {item.kind for item in items} == {BENCHMARKS[name].kind}
    for item in items:
        assert item.prompt and item.messages[0]["role"] == "user" and item.messages[0]["content"]
        if item.kind == "code":
            assert item.tests and item.reference
        else:
            assert item.answer


@pytest.mark.realdata
def test_gsm8k_prompt_is_eight_train_exemplars_then_the_question(shared_data):
    items = load_gsm8k(shared_data)
    assert len(items) == 1319
    with gzip.open(shared_data / "evals" / "gsm8k_train.jsonl.gz", "rt", encoding="utf-8") as handle:
        train = [json.loads(next(handle)) for _ in range(9)]
    prompt = items[0].prompt
    assert prompt.count("Question: ") == 9 and prompt.count("\nAnswer: ") == 8
    assert prompt.startswith(f"Question: {train[0]['question']}\nAnswer: ")
    assert train[7]["question"] in prompt and train[8]["question"] not in prompt
    assert "<<" not in prompt and "#### 72" in prompt  # calculator marks removed, final answer lines kept
    assert prompt.endswith("\nAnswer:")
    assert "Janet’s ducks lay 16 eggs" in prompt.rsplit("Question: ", 1)[1]
    assert items[0].answer == "18" and items[1318].reference.endswith(items[1318].answer)
    assert items[0].messages[0]["content"].endswith(BOXED_INSTRUCTION)
    assert items[0].stop == ("\nQuestion:",)
    zero_shot = load_gsm8k(shared_data, shots=0)[0].prompt
    assert zero_shot.startswith("Question: Janet") and zero_shot.endswith("\nAnswer:")


def test_strip_calculator_annotations():
    assert strip_calculator_annotations("48/2 = <<48/2=24>>24 clips") == "48/2 = 24 clips"
    assert strip_calculator_annotations("a <<b") == "a <<b"


@pytest.mark.realdata
def test_math_prompts_and_gold_text(shared_data):
    amc = load_benchmark("amc23", shared_data)
    assert amc[0].answer == "27"  # stored as 27.0 in the file
    aime = load_benchmark("aime24", shared_data)
    assert aime[0].id == "aime24/60" and aime[0].reference and aime[0].metadata["url"].startswith("https://")
    math500 = load_benchmark("math500", shared_data)
    assert math500[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert math500[0].prompt.startswith("Problem:\nConvert the point") and math500[0].prompt.endswith("\n\nSolution:")
    minerva = load_benchmark("minerva_math", shared_data)
    assert minerva[0].answer == "1.6" and minerva[0].metadata["course"].startswith("Introduction to Astronomy")


@pytest.mark.realdata
def test_mgsm_all_languages_aligned_with_native_prompt_words(shared_data):
    items = load_mgsm(shared_data)
    by_lang = {lang: [item for item in items if item.metadata["language"] == lang] for lang in MGSM_LANGUAGES}
    assert all(len(rows) == 250 for rows in by_lang.values())
    english_answers = [item.answer for item in by_lang["en"]]
    for lang, rows in by_lang.items():
        assert [item.answer for item in rows] == english_answers, lang  # row i is the same problem everywhere
        assert rows[0].benchmark == f"mgsm_{lang}" and rows[0].id == f"mgsm/{lang}/0"
    assert by_lang["de"][0].prompt.startswith("Frage: Janets Enten") and by_lang["de"][0].prompt.endswith(
        "Schritt-für-Schritt-Antwort:"
    )
    assert by_lang["zh"][0].prompt.startswith("问题：")
    with pytest.raises(Nano2Error, match="unknown MGSM language"):
        load_mgsm(shared_data, languages=("xx",))


@pytest.mark.realdata
def test_mmlu_stem_standard_layout(shared_data):
    items = load_mmlu_stem(shared_data)
    first = items[0]
    assert first.answer == "C"
    assert first.prompt.startswith(
        "The following are multiple choice questions (with answers) about college biology.\n\n"
    )
    assert "\nA. maintain the population" in first.prompt and first.prompt.endswith(
        "\nD. increase the mortality rate\nAnswer:"
    )
    assert "'Answer: X' where X is one of A, B, C, D" in first.messages[0]["content"]
    assert {item.answer for item in items} == {"A", "B", "C", "D"}
    assert len({item.metadata["subject"] for item in items}) == 18


@pytest.mark.realdata
def test_humaneval_items(shared_data):
    items = load_humaneval(shared_data)
    assert items[0].id == "HumanEval/0" and items[0].entry_point == "has_close_elements"
    assert items[0].tests.rstrip().endswith("check(has_close_elements)")
    assert items[0].prompt.startswith("from typing import List") and "```python" in items[0].messages[0]["content"]
    assert "\ndef " in items[0].stop


@pytest.mark.realdata
@pytest.mark.parametrize(
    "variant, split, count",
    [("sanitized", "test", 257), ("sanitized", "all", 427), ("full", "test", 500), ("full", "all", 974)],
)
def test_mbpp_splits_and_prompt(shared_data, variant, split, count):
    items = load_mbpp(shared_data, variant=variant, split=split)
    assert len(items) == count
    item = next(i for i in items if i.metadata["task_id"] >= 11)
    assert item.prompt.count("[BEGIN]") == 4 and item.prompt.count("[DONE]") == 3 and item.prompt.endswith("[BEGIN]\n")
    assert item.prompt.startswith("You are an expert Python programmer, and here is your task: ")
    tests = item.tests.strip().splitlines()
    assert all(
        line in item.prompt and line in item.messages[0]["content"] for line in tests if line.startswith("assert")
    )
    if split == "test":
        assert all(11 <= i.metadata["task_id"] <= 510 for i in items)
        assert not any(i.metadata["task_id"] in (2, 3, 4) for i in items)  # exemplars are not evaluated


@pytest.mark.realdata
def test_mbpp_sanitized_imports_go_before_the_solution(shared_data):
    items = load_mbpp(shared_data, split="all")
    with_imports = [i for i in items if i.preamble]
    assert with_imports and all(
        line.startswith(("import", "from")) for i in with_imports for line in i.preamble.splitlines()
    )
    full = load_mbpp(shared_data, variant="full", split="all")
    setup = [i for i in full if "root = Node(1)" in i.tests]
    assert len(setup) == 2 and setup[0].tests.index("root = Node(1)") < setup[0].tests.index("assert")


def test_resolve_data_dir_errors_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NANO2_SHARED_DATA", str(tmp_path / "absent"))
    with pytest.raises(Nano2Error, match=r"absent \(from \$NANO2_SHARED_DATA\) does not exist"):
        resolve_data_dir()
    monkeypatch.setenv("NANO2_SHARED_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    with pytest.raises(Nano2Error, match=r"benchmark file evals/gsm8k_test\.jsonl not found under"):
        load_gsm8k()
    with pytest.raises(Nano2Error, match="the data_dir argument"):
        resolve_data_dir(tmp_path / "nope")


def _stage(tmp_path: Path, relative: str, text: str) -> Path:
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return tmp_path


def test_malformed_rows_are_errors_naming_file_and_line(tmp_path):
    root = _stage(tmp_path, "evals/math500_test.jsonl", '{"problem": "1+1", "answer": "2"}\n{"problem": "x"\n')
    with pytest.raises(Nano2Error, match=r"math500_test.jsonl:2: malformed JSON"):
        load_benchmark("math500", root)
    root = _stage(tmp_path, "evals/aime25_test.jsonl", '{"problem": "1+1"}\n')
    with pytest.raises(Nano2Error, match=r"aime25_test.jsonl:1: missing field\(s\) answer"):
        load_benchmark("aime25", root)
    root = _stage(tmp_path, "multilingual/mgsm_de.tsv", "Frage ohne Antwort\n")
    with pytest.raises(Nano2Error, match=r"mgsm_de.tsv:1: expected 'question<TAB>answer'"):
        load_mgsm(root, languages=("de",))
    bad_choice = {"question": "q", "type": "astronomy", "choices": ["a", "b"], "answer": 5}
    root = _stage(tmp_path, "evals/mmlu_stem_test.jsonl", json.dumps(bad_choice) + "\n")
    with pytest.raises(Nano2Error, match="answer 5 is not an index"):
        load_mmlu_stem(root)
    root = _stage(tmp_path, "evals/gsm8k_test.jsonl", '{"question": "q", "answer": "no final line"}\n')
    with pytest.raises(Nano2Error, match="#### N"):
        load_gsm8k(root, shots=0)


def test_load_benchmark_rejects_unknown_names_and_options(tmp_path):
    with pytest.raises(Nano2Error, match="unknown benchmark 'gsm9k'"):
        load_benchmark("gsm9k", tmp_path)
    with pytest.raises(Nano2Error, match="bad option"):
        load_benchmark("math500", tmp_path, shots=3)
    with pytest.raises(Nano2Error, match="unknown MBPP split"):
        load_benchmark("mbpp", _stage(tmp_path, "evals/mbpp_sanitized.json", "[]"), split="dev")


@pytest.mark.realdata
def test_eval_only_files_exist_and_are_listed_for_decontamination(shared_data):
    files = eval_files(shared_data)
    relative = {path.relative_to(shared_data).as_posix() for path in files}
    assert relative == EVAL_ONLY | set(MIXED_SPLIT_FILES)  # every listed file is staged
    assert "evals/gsm8k_train.jsonl.gz" not in relative  # the few-shot/training split is not evaluation data
    for name, benchmark in BENCHMARKS.items():
        for rel in benchmark.files:
            assert rel in relative or rel == "evals/gsm8k_train.jsonl.gz", name
    assert is_eval_file(shared_data / "evals" / "humaneval.jsonl.gz", shared_data)
    assert is_eval_file("/elsewhere/copy/of/mgsm_fr.tsv", shared_data)  # caught by name when copied
    assert not is_eval_file(shared_data / "evals" / "gsm8k_train.jsonl.gz", shared_data)
    assert benchmark_path("evals/math500_test.jsonl", shared_data).is_file()
