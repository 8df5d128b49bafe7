"""What every task shares: parse results with drop reasons, the generic checks of a response, deterministic choices,
token splitting, and the question-answer format.

Choices that look random (which rows get empty traces, which chunks get QA, which budget a trace is cut to) are
hashes of (seed, what, ids), never draws from a stateful RNG: the same input gives the same choice on every rerun,
in any order, on any number of workers.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nano2.errors import Nano2Error
from synthetic.backends import GenerationResponse
from synthetic.config import GenerationSettings
from synthetic.tokens import TokenCounter
from synthetic.tokens import token_counter as token_counter  # re-exported: tasks and tests count tokens from here


@dataclass(frozen=True)
class Parsed:
    """A parser's verdict: a value, or the reason the output is dropped (with what was measured)."""

    value: Any = None
    drop: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.drop is None


def keep(value: Any, **details: Any) -> Parsed:
    return Parsed(value=value, details=details)


def drop(reason: str, **details: Any) -> Parsed:
    return Parsed(drop=reason, details=details)


def answer_problem(response: GenerationResponse, settings: GenerationSettings) -> Parsed | None:
    """The checks before a task's parser, or None when the response passes: a backend error, no text, or an output
    cut by the token limit (a cut output is never a complete answer)."""
    if not response.ok:
        return drop("backend_error", error=(response.error or "")[:300], attempts=response.attempts)
    if not response.texts:
        return drop("empty_response")
    if settings.drop_truncated and response.finish_reasons and response.finish_reasons[0] == "length":
        return drop("output_truncated", max_output_tokens=settings.max_output_tokens)
    return None


# --------------------------------------------------------------------------------------------------- choices


def unit_hash(seed: int, *parts: object) -> float:
    """A number in [0, 1) that depends only on the seed and the parts."""
    digest = hashlib.sha256("\0".join([str(seed), *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def chosen(share: float, seed: int, *parts: object) -> bool:
    """Whether an item belongs to a share (0..1) of items, decided by its ids alone."""
    return unit_hash(seed, *parts) < share


def pick_int(low: int, high: int, seed: int, *parts: object) -> int:
    """An integer in [low, high], uniform over items, decided by their ids alone."""
    return low + int(unit_hash(seed, *parts) * (high - low + 1))


# --------------------------------------------------------------------------------------------------- tokens


def chunk_by_tokens(text: str, chunk_tokens: int, counter: TokenCounter) -> list[str]:
    """Consecutive pieces of `chunk_tokens` tokens (the last may be shorter); joined they give back `text`.

    Cuts fall on token starts, so no character is split.
    """
    if chunk_tokens < 1:
        raise Nano2Error(f"chunk size must be >= 1 token, got {chunk_tokens}")
    offsets = counter.char_offsets(text)
    if not offsets:
        return [text] if text else []
    starts = [offsets[i][0] for i in range(0, len(offsets), chunk_tokens)]
    starts[0] = 0
    bounds = [*starts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def split_by_lines(text: str, max_tokens: int, counter: TokenCounter) -> list[str]:
    """Segments of at most `max_tokens` tokens, cut at line ends (a single longer line is cut by tokens).

    Nemotron-CC limits each rephrasing prompt's input (1000-2000 tokens); longer documents become several
    requests instead of being truncated.
    """
    if counter.count(text) <= max_tokens:
        return [text]
    segments: list[str] = []
    current: list[str] = []
    current_tokens = 0
    for line in text.splitlines(keepends=True):
        n = counter.count(line)
        if n > max_tokens:
            if current:
                segments.append("".join(current))
                current, current_tokens = [], 0
            segments.extend(chunk_by_tokens(line, max_tokens, counter))
            continue
        if current and current_tokens + n > max_tokens:
            segments.append("".join(current))
            current, current_tokens = [], 0
        current.append(line)
        current_tokens += n
    if current:
        segments.append("".join(current))
    return [s.strip() for s in segments if s.strip()]


# --------------------------------------------------------------------------------------------------- QA format

_QUESTION = re.compile(r"^\s*(?:[-*]\s+|\d+[.)]\s+)?\**question\**\s*(?:\d+\s*)?[:：]\**\s*", re.IGNORECASE)
_ANSWER = re.compile(r"^\s*(?:[-*]\s+)?\**answer\**\s*(?:\d+\s*)?[:：]\**\s*", re.IGNORECASE)


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str


def format_qa_pairs(pairs: Sequence[QAPair]) -> str:
    return "\n\n".join(f"Question: {p.question}\nAnswer: {p.answer}" for p in pairs)


def parse_qa_pairs(text: str, max_preamble_lines: int = 1) -> Parsed:
    """`Question: ...` / `Answer: ...` blocks -> a list of QAPair, or a drop reason.

    Tolerated: bullets or numbers before the labels, bold labels, continuation lines (multi-line answers or
    multiple-choice options), and up to `max_preamble_lines` lines of lead-in before the first question. Dropped:
    empty output, no pairs, a question without an answer, an answer without a question, an empty question or
    answer, more lead-in than allowed.
    """
    lines = [line.rstrip() for line in (text or "").strip().splitlines()]
    if not any(line.strip() for line in lines):
        return drop("empty_output")
    pairs: list[dict[str, list[str]]] = []
    preamble = 0
    part = None
    for line in lines:
        if _QUESTION.match(line):
            if pairs and not pairs[-1]["answer"]:
                return drop("question_without_answer", pairs=len(pairs))
            pairs.append({"question": [_QUESTION.sub("", line, count=1)], "answer": []})
            part = "question"
        elif _ANSWER.match(line):
            if not pairs or part != "question":
                return drop("answer_without_question", pairs=len(pairs))
            pairs[-1]["answer"].append(_ANSWER.sub("", line, count=1))
            part = "answer"
        elif not line.strip():
            continue
        elif part is None:
            preamble += 1
            if preamble > max_preamble_lines:
                return drop("text_before_first_question", lines=preamble)
        else:
            pairs[-1][part].append(line.strip())
    if not pairs:
        return drop("no_qa_pairs")
    if not pairs[-1]["answer"]:
        return drop("question_without_answer", pairs=len(pairs))
    out = []
    for p in pairs:
        question, answer = "\n".join(p["question"]).strip(), "\n".join(p["answer"]).strip()
        if not question:
            return drop("empty_question", pairs=len(pairs))
        if not answer:
            return drop("empty_answer", pairs=len(pairs))
        out.append(QAPair(question, answer))
    return keep(out, pairs=len(out))


# --------------------------------------------------------------------------------------------------- prose checks


def normalized_words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def check_prose(output: str, source: str, min_words: int = 5, min_distinct_trigram_share: float = 0.3) -> Parsed:
    """Shared sanity checks for rewritten prose: not empty, not tiny, not a copy, not looping."""
    text = (output or "").strip()
    if not text:
        return drop("empty_output")
    words = normalized_words(text)
    if len(words) < min_words:
        return drop("too_short", words=len(words))
    if words == normalized_words(source):
        return drop("copied_input")
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if len(trigrams) >= 10:
        share = len(set(trigrams)) / len(trigrams)
        if share < min_distinct_trigram_share:
            return drop("repetitive_output", distinct_trigram_share=round(share, 3))
    return keep(text, words=len(words))
