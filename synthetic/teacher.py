"""Format demonstrations for a tiny CPU "format teacher": real data in, our exact prompts, parseable targets out.

Why: a random-init tiny checkpoint writes gibberish, so every parser drops everything and the tiny recipe would
exercise only the drop paths. A small model fine-tuned (by train/'s SFT) on these rows learns the *formats* the
parsers expect, so the tiny run produces kept rows for every task it can. These rows are format demonstrations,
NOT quality data: their targets are extractive or come from reference solutions, never invented text.

Sources, all real:
- `diverse_qa`: GSM8K train problems. The document is two problems; each pair asks one problem in full and
  answers with the last step of its reference solution (calculator marks removed) and the final number.
- `reasoning_sft`: GSM8K train problems with the reference solution as the trace and `\\boxed{N}` as the answer;
  a hashed 10% are reasoning-off rows (answer only, `/no_think`), as the pipeline writes them. MBPP train problems
  (task ids 601-974 only; the rest is evaluation data) give reasoning-off code rows: the reference code in a
  ```python block.
- `distill`, `extract_knowledge`, `knowledge_list`, `wiki_paraphrase`, `long_context_qa`: curated web text. Targets
  are extractive: the leading third of the sentences (distill), sentences stating facts with figures or
  definitions (extract_knowledge), one bullet per informative sentence (knowledge_list), the text without short
  clutter lines as paragraphs (wiki_paraphrase), and "which sentence begins with ..." questions answered with
  that sentence (long_context_qa).
- `translate`: none. The only parallel text here is MGSM (GSM8K *test* problems, human-translated) and M-IFEval,
  both evaluation data, which must not be trained on; there is no honest source of translation demonstrations,
  so the manifest lists translate as unavailable and a tiny teacher will not produce translations.

Every target is checked with the task's own parser before it is written; one that fails is skipped and counted.
Rows are chat rows of the contract (manifest kind chat, `<out>/subset=<task>/00000.parquet`), drops go to the
contract's decisions folder beside `out`.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nano2.contracts.chat import THINK_PREFIX
from nano2.errors import Nano2Error
from nano2.manifest import Manifest, input_ref
from synthetic.config import InputConfig
from synthetic.inputs import iter_documents
from synthetic.prompting import load_prompt
from synthetic.records import ChatOutput, chat_row
from synthetic.tasks.common import Parsed, QAPair, chosen, format_qa_pairs, parse_qa_pairs, token_counter
from synthetic.tasks.reasoning import gsm8k_trace, reasoning_target, split_reasoning, verify_math
from synthetic.tasks.rephrase import parse_rephrase
from verify.gsm8k import gsm8k_gold

DEMO_MODEL = "demonstration"
STAGE = "teacher-data"
MBPP_TRAIN_IDS = range(601, 975)
UNAVAILABLE = {
    "translate": "no parallel text that is not evaluation data (MGSM and M-IFEval are eval sets); not built",
}
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'“(A-Z0-9])")


@dataclass
class TeacherSources:
    gsm8k: Path
    curated: list[Path] = field(default_factory=list)
    mbpp: Path | None = None


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def sentences(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        out.extend(s.strip() for s in _SENTENCE.split(line.strip()) if s.strip())
    return out


def cap_words(text: str, max_words: int) -> str:
    """Whole lines from the start until `max_words` words (a first line longer than that is cut at a sentence)."""
    kept, words = [], 0
    for line in text.strip().splitlines():
        n = len(line.split())
        if kept and words + n > max_words:
            break
        if not kept and n > max_words:
            parts, total = [], 0
            for s in sentences(line):
                if parts and total + len(s.split()) > max_words:
                    break
                parts.append(s)
                total += len(s.split())
            return " ".join(parts)
        kept.append(line)
        words += n
    return "\n".join(kept).strip()


def _informative(sentence: str) -> bool:
    return len(sentence.split()) >= 6 and sentence[-1:] in ".!?" and not sentence.isupper()


def distill_target(document: str) -> str | None:
    good = [s for s in sentences(document) if _informative(s)]
    total = sum(len(s.split()) for s in good)
    kept, words = [], 0
    for s in good:
        if kept and words >= total / 3:
            break
        kept.append(s)
        words += len(s.split())
    return " ".join(kept) or None


def extract_knowledge_target(document: str) -> str | None:
    facts = [s for s in sentences(document) if _informative(s) and re.search(r"\d|\b(?:is|are|was|were|means)\b", s)]
    return " ".join(facts[:6]) or None


def knowledge_list_target(document: str) -> str | None:
    facts = [s for s in sentences(document) if _informative(s)][:6]
    return "\n".join(f"- {s}" for s in facts) or None


def wiki_paraphrase_target(document: str) -> str | None:
    lines = [line.strip() for line in document.splitlines() if len(line.split()) >= 6]
    return "\n\n".join(lines) or None


def long_context_target(chunk: str) -> str | None:
    pairs = []
    for s in [s for s in sentences(chunk) if 8 <= len(s.split()) <= 40][:2]:
        opening = " ".join(s.split()[:5])
        pairs.append(QAPair(f'Which sentence of the passage begins with "{opening}"?', s))
    return format_qa_pairs(pairs) or None


_EXTRACTIVE = {
    "distill": distill_target,
    "extract_knowledge": extract_knowledge_target,
    "knowledge_list": knowledge_list_target,
    "wiki_paraphrase": wiki_paraphrase_target,
}


def _solution_text(solution: str) -> tuple[str, str] | None:
    """(worked solution without calculator marks, final number) of a GSM8K reference solution."""
    split = gsm8k_trace(solution)
    gold = gsm8k_gold(solution)
    return (split[0], gold) if split and gold else None


def build_teacher_data(
    out: str | Path,
    sources: TeacherSources,
    limit: int = 200,
    max_words: int = 120,
    seed: int = 0,
    empty_trace_share: float = 0.10,
    tokenizer: str = "default",
) -> Manifest:
    """Write demonstration rows for every task that has an honest source (chat rows by task + manifest)."""
    if limit < 1 or max_words < 20:
        raise Nano2Error("teacher data: limit must be >= 1 and max_words >= 20")
    for path in [sources.gsm8k, *sources.curated, *([sources.mbpp] if sources.mbpp else [])]:
        if not Path(path).exists():
            raise Nano2Error(f"teacher data: {path} not found")
    output = ChatOutput(out, STAGE, token_counter(tokenizer))
    counts: dict[str, int] = {}

    def add(task: str, source_id: str, messages: list[dict[str, str]], target: str, reasoning: bool, meta: dict):
        prompt_version = meta.pop("prompt_version")
        added = output.add(
            chat_row(
                row_id=f"teacher/{task}/{source_id}",
                messages=[*messages, {"role": "assistant", "content": target}],
                reasoning=reasoning,
                task=task,
                source_id=source_id,
                prompt_version=prompt_version,
                model=DEMO_MODEL,
                sampling={},
                metadata={"demonstration": True, **meta},
            ),
            subset=task,
        )
        counts[task] = counts.get(task, 0) + int(added)

    def check(task: str, source_id: str, parsed: Parsed) -> bool:
        if not parsed.ok:
            output.drop(task, source_id, f"demo_{parsed.drop}", parsed.details)
        return parsed.ok

    problems = list(_jsonl(Path(sources.gsm8k)))
    # reasoning_sft from GSM8K reference solutions
    math_prompt = load_prompt("reasoning_math")
    for i, row in enumerate(problems[:limit]):
        solved = _solution_text(row.get("answer", ""))
        if solved is None:
            output.drop("reasoning_sft", f"gsm8k/{i}", "demo_no_reference_solution")
            continue
        trace, gold = solved
        answer = f"The answer is \\boxed{{{gold}}}."
        target = reasoning_target(trace, answer)
        split = split_reasoning(target.removeprefix(THINK_PREFIX))
        if not check("reasoning_sft", f"gsm8k/{i}", split) or not check(
            "reasoning_sft", f"gsm8k/{i}", verify_math(answer, gold)
        ):
            continue
        empty = chosen(empty_trace_share, seed, f"gsm8k/{i}", "empty-trace")
        add(
            "reasoning_sft",
            f"gsm8k/{i}",
            math_prompt.messages(not empty, problem=row["question"].strip()),
            answer if empty else target,
            not empty,
            {"prompt_version": math_prompt.tag, "source": "gsm8k_train", "empty_trace": empty},
        )
    # reasoning_sft code rows from MBPP train
    if sources.mbpp is not None:
        code_prompt = load_prompt("reasoning_code")
        taken = 0
        for row in _jsonl(Path(sources.mbpp)):
            if taken >= limit or int(row.get("task_id", -1)) not in MBPP_TRAIN_IDS:
                continue
            tests = [t for t in row.get("test_list", []) if t.strip()]
            code = (row.get("code") or "").replace("\r\n", "\n").strip()
            if not tests or not code:
                continue
            taken += 1
            add(
                "reasoning_sft",
                f"mbpp/{row['task_id']}",
                code_prompt.messages(False, problem=row["text"].strip(), tests="\n".join(tests)),
                f"```python\n{code}\n```",
                False,
                {"prompt_version": code_prompt.tag, "source": "mbpp_train", "empty_trace": True},
            )
    # diverse_qa from pairs of GSM8K problems
    qa_prompt = load_prompt("diverse_qa")
    for g in range(min(limit, max(0, len(problems) - limit) // 2)):
        start = limit + 2 * g  # problems not used by reasoning_sft above
        group = problems[start : start + 2]
        solved = [(p["question"].strip(), _solution_text(p.get("answer", ""))) for p in group]
        if len(solved) < 2 or any(s is None for _, s in solved):
            continue
        pairs = [
            QAPair(q, f"{s[0].splitlines()[-1].strip().rstrip('.')}. The answer is {s[1]}.") for q, s in solved if s
        ]
        document = "\n\n".join(q for q, _ in solved)
        target = format_qa_pairs(pairs)
        if check("diverse_qa", f"gsm8k-group/{g}", parse_rephrase("diverse_qa", target, document)):
            add(
                "diverse_qa",
                f"gsm8k-group/{g}",
                qa_prompt.messages(False, document=document),
                target,
                False,
                {"prompt_version": qa_prompt.tag, "source": "gsm8k_train"},
            )
    # extractive rephrasing and long-context demonstrations from curated text
    prompts = {task: load_prompt(task) for task in (*_EXTRACTIVE, "long_context_qa")}
    for path in sources.curated:
        for doc in iter_documents(InputConfig(path=str(path))):
            if all(counts.get(t, 0) >= limit for t in prompts):
                break
            document = cap_words(doc.text, max_words)
            if len(document.split()) < 30:
                continue
            for task, make in _EXTRACTIVE.items():
                if counts.get(task, 0) >= limit:
                    continue
                target = make(document)
                if target is None:
                    continue
                if check(task, doc.id, parse_rephrase(task, target, document)):
                    add(
                        task,
                        doc.id,
                        prompts[task].messages(False, document=document),
                        target,
                        False,
                        {"prompt_version": prompts[task].tag, "source": str(path), "method": "extractive"},
                    )
            target = long_context_target(document)
            if (
                counts.get("long_context_qa", 0) < limit
                and target
                and check("long_context_qa", doc.id, parse_qa_pairs(target))
            ):
                add(
                    "long_context_qa",
                    doc.id,
                    prompts["long_context_qa"].messages(False, chunk=document),
                    target,
                    False,
                    {"prompt_version": prompts["long_context_qa"].tag, "source": str(path), "method": "extractive"},
                )
    inputs = [input_ref(p) for p in [sources.gsm8k, *sources.curated, *([sources.mbpp] if sources.mbpp else [])]]
    return output.close(
        name="teacher-demonstrations",
        config={"limit": limit, "max_words": max_words, "seed": seed, "empty_trace_share": empty_trace_share},
        config_path=None,
        inputs=inputs,
        extra={
            "purpose": "format demonstrations for a tiny CPU teacher; not quality data",
            "unavailable": UNAVAILABLE,
            "tokenizer": tokenizer,
        },
    )
