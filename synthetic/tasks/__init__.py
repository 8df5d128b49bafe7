"""The synthetic tasks: each module holds a task's parsers/validators (a value or a drop reason) and its stage's
run function (`run_<stage>(ctx)`: requests, parsing, rows and drops; see `synthetic.stage`).

Tasks, the prompts they render (`synthetic/prompts/<prompt>.yaml`) and what they write:

- diverse_qa, distill, extract_knowledge, knowledge_list, wiki_paraphrase (one prompt each): documents, rephrased
  crawl (rephrase.py);
- translate (translate): documents, DiverseQA pairs in 15 languages (translate.py);
- reasoning_sft (reasoning_math, reasoning_code): chat rows, verified traces (reasoning.py; the stage's run function
  is in reasoning_run.py, because problems.py builds on reasoning.py);
- preference (reasoning_math, reasoning_code): preference rows, DPO pairs (preference.py);
- truncate_traces (no prompt: cuts verified traces): chat rows, budget control (truncate.py);
- long_context_qa (long_context_qa): documents, chunk QA appended to long documents (long_context.py).

`problems.py` holds what reasoning, preference and truncate share about verifiable problems.
"""

from __future__ import annotations

from synthetic.config import HIGH_TASKS, LOW_TASKS, REPHRASE_TASKS

TASK_PROMPTS: dict[str, tuple[str, ...]] = {
    **{task: (task,) for task in REPHRASE_TASKS},
    "translate": ("translate",),
    "reasoning_sft": ("reasoning_math", "reasoning_code"),
    "preference": ("reasoning_math", "reasoning_code"),
    "truncate_traces": (),
    "long_context_qa": ("long_context_qa",),
}
TASKS = tuple(TASK_PROMPTS)

__all__ = ["HIGH_TASKS", "LOW_TASKS", "REPHRASE_TASKS", "TASKS", "TASK_PROMPTS"]
