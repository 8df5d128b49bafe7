"""One answer, one verdict: the reasoning SFT filter, the GRPO reward and the eval score agree on the same answers.

Each call site is driven the way its pipeline drives it, with the gold its own loader reads:
- the SFT filter (synthetic's reasoning stage): `split_reasoning(completion)`, then `verify_math` / `verify_code` on
  the answer part, the gold from `synthetic.tasks.reasoning.gsm8k_gold` or the problem's answer field;
- the GRPO reward (train/grpo.py): `MathReward` on the token ids of the completion of a reasoning-on chat prompt,
  the gold from `train.rewards.load_gsm8k`;
- the eval score (evals/run.py): `scored_answer(completion, "chat", thinking=True)`, then `score_answers`, the gold
  and the code program from the benchmark's loader.

The answers are the benchmarks' gold answers and perturbations of them (a wrong number, off by one, other formatting
of the right answer, malformed, truncated mid-trace, an unclosed trace, empty), on samples of GSM8K, MATH-500 and
MBPP. The one intended difference is the SFT filter's data contract: a training target states its answer (boxed or
`#### N`) and gives code in a fenced block, so a right answer left unstated (or unfenced code) is scored right by
the eval and the reward but dropped by the filter as `no_final_answer` (`no_code_block`); those cases are asserted
as such, not skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from evals.config import BenchmarkConfig
from evals.scoring import score_answers, scored_answer
from evals.tasks import Task, load_tasks
from model.tokenizer import load_tokenizer, render_chat
from nano2.contracts.chat import THINK_CLOSE, THINK_OPEN, THINK_PREFIX
from synthetic.tasks.reasoning import gsm8k_trace, split_reasoning, verify_code, verify_math
from train.rewards import MATH_TASK, MathReward, load_gsm8k
from verify.gsm8k import gsm8k_gold
from verify.math import gold_number

pytestmark = pytest.mark.realdata

GSM8K_SAMPLE = range(0, 1319, 53)  # 25 of the 1319 test problems, spread over the file
MATH500_SAMPLE = range(0, 500, 20)  # 25 of 500
MBPP_SAMPLE = (11, 93, 177, 260, 348, 431, 510)  # task ids across MBPP's test split (11-510)


@dataclass(frozen=True)
class Verdicts:
    """What each call site made of one completion."""

    sft_kept: bool
    sft_drop: str | None
    grpo_reward: float
    eval_correct: bool


class CallSites:
    """The three judges of a math completion, each fed as its pipeline feeds it."""

    def __init__(self, tokenizer_dir: Path):
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.reward = MathReward(self.tokenizer)

    def judge(self, completion: str, task: Task, sft_gold: str, grpo_gold: str) -> Verdicts:
        split = split_reasoning(completion)
        sft = verify_math(split.value[1], sft_gold) if split.ok else split
        prompt = render_chat([{"role": "user", "content": task.messages[0]["content"]}])
        assert prompt.endswith(THINK_PREFIX)  # a reasoning-on rollout starts inside the trace
        ids = self.tokenizer.encode(completion, add_special_tokens=False).ids
        [reward] = self.reward([prompt], [completion], [ids], [MATH_TASK], [grpo_gold])
        [scored] = score_answers([(task, scored_answer(completion, "chat", True))])
        return Verdicts(sft.ok, sft.drop, reward, scored.correct)


@pytest.fixture(scope="module")
def call_sites(tiny_tokenizer_dir) -> CallSites:
    return CallSites(tiny_tokenizer_dir)


def _completion(trace: str, answer: str) -> str:
    """A reasoning-on completion: the prompt opened the trace, so it is `trace </think> answer`."""
    return f"{trace}\n{THINK_CLOSE}\n{answer}"


def _number_text(value) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _math_cases(trace: str, gold: str) -> list[tuple[str, str, bool | None]]:
    """(name, completion, right?) for one item: None where only agreement is asserted (a perturbed LaTeX answer)."""
    boxed = f"\\boxed{{{gold}}}"
    cases: list[tuple[str, str, bool | None]] = [
        ("gold boxed", _completion(trace, f"The answer is {boxed}."), True),
        ("gold on a #### line", _completion(trace, f"So we are done.\n#### {gold}"), True),
        ("trace re-opened", THINK_OPEN + _completion(trace, boxed), True),
        ("corrected box wins", _completion(trace, f"First \\boxed{{{gold}1}}, corrected: \\boxed{{{gold}}}"), True),
        ("unclosed box", _completion(trace, f"The answer is \\boxed{{{gold}"), False),
        ("answer only in the trace", _completion(f"{trace} so \\boxed{{{gold}}}", "I am not sure."), False),
        ("cut mid-trace", trace[: len(trace) // 2], False),
        ("unclosed trace with the answer", f"{trace}\nThe answer is \\boxed{{{gold}}}.", False),
        ("empty answer", _completion(trace, ""), False),
        ("empty", "", False),
        ("malformed", _completion(trace, "\\boxed{}{}}"), False),
    ]
    value = gold_number(gold)
    if value is not None:
        cases += [
            ("wrong number", _completion(trace, f"\\boxed{{{_number_text(value * 3 + 7)}}}"), False),
            ("off by one up", _completion(trace, f"\\boxed{{{_number_text(value + 1)}}}"), False),
            ("off by one down", _completion(trace, f"#### {_number_text(value - 1)}"), False),
            ("as a decimal", _completion(trace, f"\\boxed{{{float(value)!r}}}"), True),
            ("in dollars", _completion(trace, f"\\boxed{{\\${_number_text(value)}}}"), True),
        ]
        if value.denominator == 1 and abs(value) >= 1000:
            cases.append(("thousands separators", _completion(trace, f"\\boxed{{{int(value):,}}}"), True))
    fraction = re.fullmatch(r"\\[dt]?frac\{?(\d+)\}?\{?(\d+)\}?", gold)
    if fraction:
        numerator, denominator = fraction.groups()
        cases.append(("a/b for \\frac", _completion(trace, f"\\boxed{{{numerator}/{denominator}}}"), True))
    if value is None:
        cases.append(("perturbed LaTeX", _completion(trace, f"\\boxed{{{gold}+1}}"), None))
    return cases


def _assert_one_verdict(sites: CallSites, task: Task, trace: str, sft_gold: str, grpo_gold: str) -> int:
    checked = 0
    for name, completion, right in _math_cases(trace, sft_gold):
        got = sites.judge(completion, task, sft_gold, grpo_gold)
        where = f"{task.item_id} [{name}] {completion[-120:]!r}: {got}"
        assert got.sft_kept == (got.grpo_reward == 1.0) == got.eval_correct, where
        if right is not None:
            assert got.eval_correct is right, where
        checked += 1
    # the filter's data contract: a right answer must be stated to become training data
    unstated = sites.judge(_completion(trace, f"Adding it up, the answer is ${sft_gold}$."), task, sft_gold, grpo_gold)
    assert (unstated.sft_drop, unstated.grpo_reward, unstated.eval_correct) == ("no_final_answer", 1.0, True)
    return checked + 1


def test_gsm8k_answers_get_one_verdict_everywhere(shared_data, call_sites):
    path = shared_data / "evals" / "gsm8k_test.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    grpo_rows = load_gsm8k(path)
    spec = BenchmarkConfig(name="gsm8k", options={"shots": 0}, ids=[f"gsm8k/test/{i}" for i in GSM8K_SAMPLE])
    tasks = {task.item_id: task for task in load_tasks(spec, shared_data)}
    checked = 0
    for index in GSM8K_SAMPLE:
        task, solution = tasks[f"gsm8k/test/{index}"], rows[index]["answer"]
        sft_gold, grpo_gold = gsm8k_gold(solution), grpo_rows[index]["gold"]
        assert sft_gold == grpo_gold == task.item.answer  # one gold, whoever reads the file
        trace, _ = gsm8k_trace(solution)
        checked += _assert_one_verdict(call_sites, task, trace, sft_gold, grpo_gold)
    assert checked >= 25 * 17


def test_math500_answers_get_one_verdict_everywhere(shared_data, call_sites):
    spec = BenchmarkConfig(name="math500", ids=[f"math500/{i}" for i in MATH500_SAMPLE])
    tasks = load_tasks(spec, shared_data)
    assert len(tasks) == len(MATH500_SAMPLE)
    checked = 0
    for task in tasks:
        trace = "Let me work through the problem step by step.\nChecking the result once more, it holds."
        checked += _assert_one_verdict(call_sites, task, trace, task.item.answer, task.item.answer)
    assert checked >= 25 * 13


def test_mbpp_solutions_get_one_sandbox_verdict_in_the_filter_and_the_eval(shared_data):
    rows = {
        row["task_id"]: row
        for row in map(json.loads, (shared_data / "evals" / "mbpp_full.jsonl").read_text(encoding="utf-8").splitlines())
    }
    spec = BenchmarkConfig(name="mbpp_full", ids=[f"mbpp_full/{task_id}" for task_id in MBPP_SAMPLE])
    tasks = {task.item.metadata["task_id"]: task for task in load_tasks(spec, shared_data)}
    trace = "The tests call the function directly, so define it at the top level."
    cases, expected = [], []
    for task_id in MBPP_SAMPLE:
        row = rows[task_id]
        code = row["code"].replace("\r\n", "\n")
        names = re.findall(r"^def\s+(\w+)", code, re.MULTILINE)
        stubs = "\n".join(f"def {name}(*args, **kwargs):\n    return None" for name in names)
        variants = {
            "canonical": (f"```python\n{code}\n```", True),
            "stubbed": (f"```python\n{code}\n\n{stubs}\n```", False),
            "cut in half": (f"```python\n{code[: len(code) // 2]}\n```", False),
            "escapes the sandbox": (f"```python\nimport os\nos.system('true')\n{code}\n```", False),
        }
        for name, (answer, passes) in variants.items():
            cases.append((task_id, name, _completion(trace, answer)))
            expected.append(passes)
    eval_verdicts = score_answers([(tasks[t], scored_answer(c, "chat", True)) for t, _, c in cases], workers=2)
    for (task_id, name, completion), passes, scored in zip(cases, expected, eval_verdicts, strict=True):
        row = rows[task_id]
        sft = verify_code(split_reasoning(completion).value[1], row["test_list"], row.get("test_setup_code", ""))
        where = f"mbpp {task_id} [{name}]: filter {sft.drop} {sft.details}, eval {scored.verdict} {scored.detail}"
        assert sft.ok == scored.correct == passes, where
        if name == "escapes the sandbox":  # both ran it in verify.sandbox, which refused the process
            assert sft.details["verdict"] == scored.verdict == "blocked", where
    # unfenced code: the eval reads it as code, the filter's contract wants a fenced block
    task_id = MBPP_SAMPLE[0]
    unfenced = _completion(trace, rows[task_id]["code"].replace("\r\n", "\n"))
    [scored] = score_answers([(tasks[task_id], scored_answer(unfenced, "chat", True))])
    sft = verify_code(split_reasoning(unfenced).value[1], rows[task_id]["test_list"])
    assert (scored.correct, sft.drop) == (True, "no_code_block")
