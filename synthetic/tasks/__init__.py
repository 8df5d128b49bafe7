"""The synthetic tasks: prompt files and parsers/validators that return a value or a drop reason.

Tasks and the prompt each one renders (`synthetic/prompts/<prompt>.yaml`):

    diverse_qa, distill, extract_knowledge, knowledge_list, wiki_paraphrase   rephrasing of crawl (rephrase.py)
    translate                                                                 DiverseQA -> 15 languages (translate.py)
    reasoning_sft        reasoning_math / reasoning_code                      verified traces (reasoning.py)
    preference           reasoning_math / reasoning_code                      DPO pairs (preference.py)
    truncate_traces      (no prompt: cuts verified traces)                    budget-control rows (truncate.py)
    long_context_qa                                                           chunk QA appended (long_context.py)
"""

from __future__ import annotations

from synthetic.tasks.rephrase import HIGH_TASKS, LOW_TASKS, REPHRASE_TASKS

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
