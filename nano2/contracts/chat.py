"""The chat contract: think markers, reasoning switches, the loss mask value, and the chat/preference row.

Every package that writes, reads, trains on or judges a chat (synthetic/, train/, model/, verify/, evals/) imports
these names from here; none spells the strings itself. A chat row is what synthetic/ writes and train/ reads:
`chat_record` is the one writer of a row and `validate_chat_record` the one reader-side check, so a row that the
writer produced is never dropped by the trainer for a rule the writer did not know.

Rows (Parquet, `CHAT_SCHEMA`): `id`, `messages` (list of {role, content}; the last is the assistant target),
`reasoning` (the mode the prompt's switches select), `task`, `source_id`, `prompt_version`, `model`, `sampling`
(JSON), `metadata` (JSON: task-specific fields, plus `token_count` of `text`), `text` (the row's training text:
prompt + target as the chat template renders them, so audits and token counts read chat rows like documents).
Preference rows (`PREFERENCE_SCHEMA`) hold the prompt turns in `messages` and the two assistant strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from nano2.errors import Nano2Error

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
"""Delimit a reasoning trace inside an assistant turn (special tokens in our tokenizer, as in Nano 2's)."""

THINK_PREFIX = f"{THINK_OPEN}\n"
"""How a reasoning-on target starts: the generation prompt opens the trace with it."""

THINK_SWITCH, NO_THINK_SWITCH = "/think", "/no_think"
"""Written in a system or user message; the last one by message order (then position) wins; `/think` is default."""

IGNORE_INDEX = -100
"""Label of a token that carries no loss (prompt tokens, padding): PyTorch's cross-entropy default."""

ROLES = ("system", "user", "assistant")

CHAT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("reasoning", pa.bool_()),
        ("task", pa.string()),
        ("source_id", pa.string()),
        ("prompt_version", pa.string()),
        ("model", pa.string()),
        ("sampling", pa.string()),
        ("metadata", pa.string()),
        ("text", pa.string()),
    ]
)
PREFERENCE_SCHEMA = pa.schema([*CHAT_SCHEMA, pa.field("chosen", pa.string()), pa.field("rejected", pa.string())])


# --------------------------------------------------------------------------------------------------- messages


def validate_messages(messages: Sequence[Mapping[str, Any]]) -> None:
    """Reject what the template would render wrongly: unknown roles, non-string content, a late system message."""
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise Nano2Error("messages must be a list of {'role': ..., 'content': ...} dicts")
    if not messages:
        raise Nano2Error("messages is empty: a conversation needs at least one message (transformers rejects it too)")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise Nano2Error(f"message {i}: expected a dict with 'role' and 'content', got {type(message).__name__}")
        role = message.get("role")
        if role not in ROLES:
            raise Nano2Error(f"message {i}: unknown role {role!r}; expected one of {', '.join(ROLES)}")
        content = message.get("content")
        if not isinstance(content, str):
            what = "missing" if content is None else f"a {type(content).__name__}"
            raise Nano2Error(f"message {i} ({role}): content must be a string, got {what}")
        if role == "system" and i != 0:
            raise Nano2Error(f"message {i}: a system message is only allowed first")


def switch_in(content: str) -> bool | None:
    """The last reasoning switch written in one message (True = /think), or None when there is none."""
    text = content.replace(THINK_CLOSE, "")
    think, no_think = text.rfind(THINK_SWITCH), text.rfind(NO_THINK_SWITCH)
    if think == no_think:
        return None
    return think > no_think


def without_switches(content: str) -> str:
    """Remove /think and /no_think but keep literal </think> tags intact."""
    parts = content.split(THINK_CLOSE)
    return THINK_CLOSE.join(p.replace(NO_THINK_SWITCH, "").replace(THINK_SWITCH, "") for p in parts).strip()


def reasoning_mode(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the model should think before answering: the last /think or /no_think in system/user text wins."""
    validate_messages(messages)
    thinking = True
    for message in messages:
        if message["role"] != "assistant":
            switch = switch_in(message["content"])
            if switch is not None:
                thinking = switch
    return thinking


def strip_thinking(text: str) -> str:
    """The visible answer of an assistant message: reasoning blocks removed, surrounding whitespace stripped.

    Handles the shapes generations take: complete ``<think>...</think>`` blocks, a ``</think>`` whose opening tag
    was in the prompt (text before it is dropped), and an unclosed ``<think>`` tail (dropped).
    """
    parts = text.split(THINK_CLOSE)
    kept = [p.split(THINK_OPEN)[0] for i, p in enumerate(parts) if i == len(parts) - 1 or THINK_OPEN in p]
    return "".join(kept).strip()


# --------------------------------------------------------------------------------------------------- rows


@dataclass
class ChatRow:
    """One validated chat row: the prompt turns and the assistant target, as the contract defines them."""

    id: str
    prompt: list[dict[str, str]]
    target: str
    reasoning: bool


def chat_record(
    *,
    row_id: str,
    messages: Sequence[Mapping[str, str]],
    reasoning: bool,
    task: str,
    source_id: str,
    prompt_version: str,
    model: str,
    sampling: Mapping[str, Any] | None,
    metadata: Mapping[str, Any],
    text: str,
) -> dict[str, Any]:
    """The one writer of a chat row (`CHAT_SCHEMA`); `metadata` stays a dict until the row is written (see
    `encode_metadata`), so the writer can add the token count of `text` first."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    if not msgs or msgs[-1]["role"] != "assistant":
        raise Nano2Error(f"row {row_id}: the last message must be the assistant target")
    return {
        "id": row_id,
        "messages": msgs,
        "reasoning": bool(reasoning),
        "task": task,
        "source_id": source_id,
        "prompt_version": prompt_version,
        "model": model,
        "sampling": json.dumps(dict(sampling or {}), sort_keys=True),
        "metadata": dict(metadata),
        "text": text,
    }


def preference_record(chosen_row: Mapping[str, Any], *, chosen: str, rejected: str) -> dict[str, Any]:
    """A preference row (`PREFERENCE_SCHEMA`) from the chat row of the chosen conversation: `messages` cut to the
    prompt turns, `chosen`/`rejected` the two assistant strings; `text` stays the chosen conversation's."""
    row_id = chosen_row["id"]
    prompt = chosen_row["messages"][:-1]
    if not prompt or prompt[-1]["role"] == "assistant":
        raise Nano2Error(f"row {row_id}: the prompt turns must not be empty or end with an assistant turn")
    if not rejected.strip() or chosen == rejected:
        raise Nano2Error(f"row {row_id}: rejected must be a non-empty answer different from chosen")
    return {**chosen_row, "messages": list(prompt), "chosen": chosen, "rejected": rejected}


def encode_metadata(row: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The row as written: `metadata` serialised to JSON (sorted keys) with `extra` fields (e.g. token_count)."""
    return {**row, "metadata": json.dumps({**row["metadata"], **extra}, sort_keys=True, default=str)}


def decode_metadata(value: str | None) -> dict[str, Any]:
    """The metadata dict of a written row."""
    return json.loads(value or "{}")


def plain_messages(value: Any) -> list[dict[str, str]] | None:
    """Plain dicts from Arrow structs; None when the value is not a list of {role, content} mappings."""
    if not isinstance(value, list) or not all(isinstance(m, Mapping) for m in value):
        return None
    return [{"role": m.get("role"), "content": m.get("content")} for m in value]


def validate_prompt(prompt: list[dict[str, str]]) -> str | None:
    """None when the prompt turns render; else the drop reason."""
    if not prompt:
        return "no_prompt_turns"
    if prompt[-1]["role"] == "assistant":
        return "prompt_ends_with_assistant"
    try:
        reasoning_mode(prompt)
    except Nano2Error:
        return "bad_messages"
    return None


def validate_target(target: Any, reasoning: bool) -> str | None:
    """None when an assistant target has the contract's shape for its reasoning mode; else the drop reason."""
    if not isinstance(target, str) or not target.strip():
        return "empty_target"
    if reasoning:
        if not target.startswith(THINK_PREFIX) or THINK_CLOSE not in target:
            return "reasoning_target_without_trace"
    elif THINK_OPEN in target or THINK_CLOSE in target:
        return "no_think_target_with_trace"
    return None


def validate_chat_record(record: Mapping[str, Any]) -> ChatRow | str:
    """The one reader-side check: a ChatRow, or the reason the record breaks the contract."""
    messages = plain_messages(record.get("messages"))
    if messages is None:
        return "bad_messages"
    if not messages or messages[-1]["role"] != "assistant":
        return "last_message_not_assistant"
    prompt, target = messages[:-1], messages[-1]["content"]
    reason = validate_prompt(prompt)
    if reason is not None:
        return reason
    reasoning = reasoning_mode(prompt)
    flag = record.get("reasoning")
    if flag is not None and bool(flag) != reasoning:
        return "reasoning_flag_disagrees_with_switch"
    reason = validate_target(target, reasoning)
    if reason is not None:
        return reason
    return ChatRow(id=str(record.get("id")), prompt=prompt, target=target, reasoning=reasoning)


@dataclass
class PreferencePrompt:
    """A validated preference row: the prompt turns, its reasoning mode and the two assistant strings."""

    id: str
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    reasoning: bool


def validate_preference_record(record: Mapping[str, Any]) -> PreferencePrompt | str:
    """The one reader-side check of a preference row: the prompt renders, both answers have the contract's shape
    for its reasoning mode (`chosen_<reason>` / `rejected_<reason>`), and they differ."""
    prompt = plain_messages(record.get("messages"))
    if prompt is None:
        return "bad_messages"
    reason = validate_prompt(prompt)
    if reason is not None:
        return reason
    reasoning = reasoning_mode(prompt)
    for side in ("chosen", "rejected"):
        reason = validate_target(record.get(side), reasoning)
        if reason is not None:
            return f"{side}_{reason}"
    if record["chosen"] == record["rejected"]:
        return "chosen_equals_rejected"
    return PreferencePrompt(
        id=str(record.get("id")),
        prompt=prompt,
        chosen=record["chosen"],
        rejected=record["rejected"],
        reasoning=reasoning,
    )
