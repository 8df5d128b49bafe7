"""Byte-level BPE tokenizer for the tiny CPU models, loading of any tokenizer.json, and the Nano 2 chat format.

Why byte-level BPE: every string (any unicode, any whitespace) encodes and decodes back exactly, with no unknown
tokens and no normalization, so data curation, training and evals all see the same text.

Special tokens (ids are their positions in ``SPECIAL_TOKENS``, so they are the same for every trained vocab):

    0 <unk>   1 <s> (bos)   2 </s> (eos)   3 <pad>
    4 <SPECIAL_10> system turn start   5 <SPECIAL_11> user/assistant turn start   6 <SPECIAL_12> end of turn
    7 <think>   8 </think>   9 <TOOLCALL>   10 </TOOLCALL>

After training, the vocab is padded with ``<reserved_{id}>`` special tokens up to a multiple of ``round_to`` so the
embedding and output matmuls have friendly shapes.

Chat format (``render_chat`` and the Jinja ``CHAT_TEMPLATE`` produce the same string), modelled on the Nemotron
Nano 2 model card:

    <SPECIAL_10>System\\n{system}\\n<SPECIAL_12>\\n              always emitted; {system} is '' without a system message
    <SPECIAL_11>User\\n{user}\\n<SPECIAL_12>\\n                  one per user message
    <SPECIAL_11>Assistant\\n{answer}\\n<SPECIAL_12>\\n           one per earlier assistant message
    <SPECIAL_11>Assistant\\n<think>\\n                          generation prompt, reasoning on
    <SPECIAL_11>Assistant\\n<think></think>                    generation prompt, reasoning off

Rules:

- ``messages`` is a non-empty list of ``{"role": ..., "content": str}`` with role ``system`` (only as the first
  message), ``user`` or ``assistant``; anything else raises ``Nano2Error`` in ``render_chat`` (the template calls
  ``raise_exception``, a jinja2 ``TemplateError`` in transformers).
- Reasoning switch: ``/think`` (the default) or ``/no_think`` written in the system or a user message; the one that
  appears last (by message order, then by position inside the message) wins. ``</think>`` is never read as
  ``/think``.
- ``{system}`` and ``{user}`` are the content with every ``/think`` and ``/no_think`` removed (``</think>`` kept),
  then stripped of surrounding whitespace.
- ``{answer}`` is ``strip_thinking(content)``: every ``<think>...</think>`` block removed, text before an unopened
  ``</think>`` dropped, an unclosed ``<think>...`` tail dropped, then stripped of surrounding whitespace.
- The generation prompt is appended only when ``add_generation_prompt`` is true.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from nano2.contracts.chat import (
    THINK_CLOSE,
    THINK_OPEN,
    reasoning_mode,
    strip_thinking,
    without_switches,
)
from nano2.errors import Nano2Error

log = logging.getLogger(__name__)

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
SYSTEM_START, TURN_START, TURN_END = "<SPECIAL_10>", "<SPECIAL_11>", "<SPECIAL_12>"
TOOLCALL_START, TOOLCALL_END = "<TOOLCALL>", "</TOOLCALL>"

SPECIAL_TOKENS: tuple[str, ...] = (
    UNK,
    BOS,
    EOS,
    PAD,
    SYSTEM_START,
    TURN_START,
    TURN_END,
    THINK_OPEN,
    THINK_CLOSE,
    TOOLCALL_START,
    TOOLCALL_END,
)
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3
BYTE_ALPHABET_SIZE = 256
MIN_VOCAB_SIZE = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)

CHAT_TEMPLATE = "".join(
    [
        "{%- set ns = namespace(thinking=true, system='', text='') -%}",
        "{%- for message in messages -%}",
        "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}",
        "{{- raise_exception('message ' ~ loop.index0 ~ ': unknown role; expected system, user or assistant') -}}",
        "{%- endif -%}",
        "{%- if message['content'] is not string -%}",
        "{{- raise_exception('message ' ~ loop.index0 ~ ': content must be a string') -}}",
        "{%- endif -%}",
        "{%- if message['role'] == 'system' and not loop.first -%}",
        "{{- raise_exception('message ' ~ loop.index0 ~ ': a system message is only allowed first') -}}",
        "{%- endif -%}",
        "{%- if message['role'] != 'assistant' -%}",
        "{%- set c = message['content'].replace('</think>', '') -%}",
        "{%- set t = c.rfind('/think') -%}",
        "{%- set n = c.rfind('/no_think') -%}",
        "{%- if t > n -%}{%- set ns.thinking = true -%}{%- elif n > t -%}{%- set ns.thinking = false -%}{%- endif -%}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- if messages and messages[0]['role'] == 'system' -%}",
        "{%- set ns.system = messages[0]['content'].split('</think>') | map('replace', '/no_think', '')"
        " | map('replace', '/think', '') | join('</think>') -%}",
        "{%- endif -%}",
        r"{{- '<SPECIAL_10>System\n' + ns.system.strip() + '\n<SPECIAL_12>\n' -}}",
        "{%- for message in messages -%}",
        "{%- if message['role'] == 'user' -%}",
        "{%- set c = message['content'].split('</think>') | map('replace', '/no_think', '')"
        " | map('replace', '/think', '') | join('</think>') -%}",
        r"{{- '<SPECIAL_11>User\n' + c.strip() + '\n<SPECIAL_12>\n' -}}",
        "{%- elif message['role'] == 'assistant' -%}",
        "{%- set ns.text = '' -%}",
        "{%- for part in message['content'].split('</think>') -%}",
        "{%- if loop.last or '<think>' in part -%}",
        "{%- set ns.text = ns.text + part.split('<think>')[0] -%}",
        "{%- endif -%}",
        "{%- endfor -%}",
        r"{{- '<SPECIAL_11>Assistant\n' + ns.text.strip() + '\n<SPECIAL_12>\n' -}}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- if add_generation_prompt -%}",
        r"{{- '<SPECIAL_11>Assistant\n' + ('<think>\n' if ns.thinking else '<think></think>') -}}",
        "{%- endif -%}",
    ]
)


# --------------------------------------------------------------------------------------------------- training


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2, round_to: int = 64) -> Tokenizer:
    """Train a byte-level BPE whose vocab size is ``vocab_size`` rounded up to a multiple of ``round_to``.

    Special tokens come first (stable ids) and are atomic; unused slots are filled with ``<reserved_{id}>`` special
    tokens, so the size is exact even when the corpus supports fewer merges than asked for.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise Nano2Error(
            f"vocab_size must be an integer >= {MIN_VOCAB_SIZE} "
            f"({BYTE_ALPHABET_SIZE} bytes + {len(SPECIAL_TOKENS)} special tokens), got {vocab_size!r}"
        )
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise Nano2Error(f"round_to must be a positive integer, got {round_to!r}")
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
        raise Nano2Error(f"min_frequency must be a positive integer, got {min_frequency!r}")
    if isinstance(texts, str | bytes):
        raise Nano2Error("texts must be an iterable of strings, not a single string")

    corpus = _non_empty_texts(texts)
    first = next(corpus, None)
    if first is None:
        raise Nano2Error("cannot train a tokenizer on an empty corpus (no non-empty texts)")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[_special(t) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(chain([first], corpus), trainer=trainer)

    target = -(-vocab_size // round_to) * round_to
    have = tok.get_vocab_size()
    tok.add_special_tokens([_special(f"<reserved_{i}>") for i in range(have, target)])
    if tok.get_vocab_size() != target:
        raise Nano2Error(f"tokenizer padding failed: vocab size {tok.get_vocab_size()}, expected {target}")
    return tok


def _special(content: str) -> AddedToken:
    """An atomic token: matched verbatim in raw text, never normalized, never merged with neighbours."""
    return AddedToken(content, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False)


def _non_empty_texts(texts: Iterable[str]) -> Iterator[str]:
    """Skip empty strings and reject non-strings with a readable error instead of a Rust type error."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise Nano2Error(f"corpus item {i} is {type(text).__name__}, expected str")
        if text:
            yield text


# --------------------------------------------------------------------------------------------------- loading


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a ``tokenizer.json`` (or a directory holding one), so any HF-format tokenizer can be reused."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        where = f"in directory {path}" if path.is_dir() else f"at {path}"
        raise Nano2Error(f"no tokenizer.json found {where}")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust side raises a bare Exception for any parse error
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise Nano2Error(f"{file}: not a valid tokenizer.json ({detail})") from None


def to_hf_tokenizer(tok: Tokenizer) -> Any:
    """Wrap a nano2 tokenizer for transformers (bos/eos/pad/unk and the chat template set), for trainers and evals."""
    from transformers import PreTrainedTokenizerFast

    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise Nano2Error(f"not a nano2 tokenizer: missing special tokens {', '.join(missing)}")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens=list(SPECIAL_TOKENS[4:]),
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tok: Tokenizer, out_dir: str | Path) -> Path:
    """Write tokenizer.json, tokenizer_config.json (chat template inline) and special_tokens_map.json.

    ``AutoTokenizer.from_pretrained(out_dir)`` then loads it offline; the template stays inside
    tokenizer_config.json (not chat_template.jinja) so older readers see it too.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise Nano2Error(f"{out} exists and is not a directory")
    hf = to_hf_tokenizer(tok)
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out), save_jinja_files=False)
    special_map = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n", encoding="utf-8")
    return out


# --------------------------------------------------------------------------------------------------- chat


def render_chat(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True) -> str:
    """Render a conversation exactly as ``CHAT_TEMPLATE`` does, without transformers (for data prep and tests)."""
    thinking = reasoning_mode(messages)
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    out = [f"{SYSTEM_START}System\n{without_switches(system)}\n{TURN_END}\n"]
    for message in messages:
        if message["role"] == "user":
            out.append(f"{TURN_START}User\n{without_switches(message['content'])}\n{TURN_END}\n")
        elif message["role"] == "assistant":
            out.append(f"{TURN_START}Assistant\n{strip_thinking(message['content'])}\n{TURN_END}\n")
    if add_generation_prompt:
        out.append(f"{TURN_START}Assistant\n" + (f"{THINK_OPEN}\n" if thinking else f"{THINK_OPEN}{THINK_CLOSE}"))
    return "".join(out)


def chat_training_text(messages: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(prompt, target) of one chat row: the training text is prompt + target, and the loss belongs to the target.

    The prompt is `render_chat(messages[:-1], add_generation_prompt=True)`; the target is the last (assistant)
    message, without the leading "<think>\\n" the prompt already ends with when reasoning is on, followed by
    "\\n<SPECIAL_12>\\n" (the end-of-turn the template writes after an assistant message).
    """
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence) or len(messages) < 2:
        raise Nano2Error("a chat row needs at least a prompt message and the assistant target")
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "assistant" or not isinstance(last.get("content"), str):
        raise Nano2Error("the last message of a chat row must be the assistant target (a string)")
    prompt_messages = list(messages[:-1])
    prompt = render_chat(prompt_messages, add_generation_prompt=True)
    target = last["content"]
    if reasoning_mode(prompt_messages):
        target = target.removeprefix(f"{THINK_OPEN}\n").removeprefix(THINK_OPEN)
    return prompt, f"{target}\n{TURN_END}\n"


# --------------------------------------------------------------------------------------------------- corpora

_SUFFIXES = (".jsonl", ".jsonl.gz", ".txt", ".txt.gz", ".parquet")


@dataclass
class CorpusStats:
    """What ``iter_corpus_texts`` read: texts yielded and bad records skipped (so the CLI can report them)."""

    files: int = 0
    texts: int = 0
    skipped: int = 0


def _corpus_kind(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in _SUFFIXES if name.endswith(s)), None)


def _skipped(folders: tuple[str, ...]) -> bool:
    """Hidden folders (run state) and `decisions/` (drop records, not text) inside an artifact are not corpus."""
    return any(f.startswith(".") or f == "decisions" for f in folders)


def _resolve_corpus_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Expand directories and check every file up front, so a typo fails before any training starts."""
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    if not items:
        raise Nano2Error("no corpus paths given")
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and _corpus_kind(p) and not _skipped(p.relative_to(path).parts[:-1])
            )
            if not found:
                raise Nano2Error(f"{path}: no corpus files ({', '.join(_SUFFIXES)}) in this directory")
            files.extend(found)
        elif not path.is_file():
            raise Nano2Error(f"{path}: corpus file not found")
        elif _corpus_kind(path) is None:
            raise Nano2Error(f"{path}: unsupported corpus file type; expected one of {', '.join(_SUFFIXES)}")
        else:
            files.append(path)
    return files


def iter_corpus_texts(
    paths: str | Path | Iterable[str | Path],
    field: str = "text",
    limit: int | None = None,
    stats: CorpusStats | None = None,
) -> Iterator[str]:
    """Yield training texts from .jsonl(.gz) (``field`` of each object), .txt(.gz) (one per line) and .parquet.

    Bad records (invalid JSON or UTF-8, missing or non-string field) are skipped, counted in ``stats`` and logged
    as one warning per file, so one broken line never stops a tokenizer run. Missing files, unsupported types and a
    Parquet file without ``field`` raise Nano2Error before anything is read.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise Nano2Error(f"limit must be a non-negative integer or None, got {limit!r}")
    if not isinstance(field, str) or not field:
        raise Nano2Error(f"field must be a non-empty string, got {field!r}")
    files = _resolve_corpus_files(paths)
    for path in files:
        if _corpus_kind(path) == ".parquet":
            _open_parquet(path, field).close()
    return _iter_files(files, field, limit, stats if stats is not None else CorpusStats())


def _iter_files(files: list[Path], field: str, limit: int | None, stats: CorpusStats) -> Iterator[str]:
    for path in files:
        if limit is not None and stats.texts >= limit:
            return
        stats.files += 1
        counter = [0]
        kind = _corpus_kind(path)
        if kind == ".parquet":
            records = _parquet_texts(path, field, counter)
        elif kind in (".txt", ".txt.gz"):
            records = _txt_texts(path, counter)
        else:
            records = _jsonl_texts(path, field, counter)
        try:
            for text in records:
                if limit is not None and stats.texts >= limit:
                    break
                stats.texts += 1
                yield text
        finally:
            records.close()
            stats.skipped += counter[0]
            if counter[0]:
                log.warning("%s: skipped %d bad record(s)", path, counter[0])


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def _read_lines(path: Path, bad: list[int]) -> Iterator[bytes]:
    """Lines of a plain or gzipped file; a truncated or corrupt gzip stream ends the file as one bad record."""
    with _open_binary(path) as fh:
        try:
            yield from fh
        except (OSError, EOFError) as exc:
            bad[0] += 1
            log.warning("%s: stopped reading at a corrupt or truncated stream (%s)", path, exc)


def _jsonl_texts(path: Path, field: str, bad: list[int]) -> Iterator[str]:
    for raw in _read_lines(path, bad):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            bad[0] += 1
            continue
        value = record.get(field) if isinstance(record, dict) else None
        if not isinstance(value, str):
            bad[0] += 1
        elif value:
            yield value


def _txt_texts(path: Path, bad: list[int]) -> Iterator[str]:
    """One text per non-blank line; the line break is kept so BPE learns newline tokens."""
    for raw in _read_lines(path, bad):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad[0] += 1
            continue
        if line.strip():
            yield line


def _open_parquet(path: Path, field: str):
    """Open a Parquet file and check it has the text column (pyarrow is imported only when Parquet is used)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise Nano2Error(f"{path}: not a readable Parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    if field not in names:
        parquet.close()
        raise Nano2Error(f"{path}: no column {field!r} (columns: {', '.join(names)})")
    return parquet


def _parquet_texts(path: Path, field: str, bad: list[int]) -> Iterator[str]:
    import pyarrow as pa

    parquet = _open_parquet(path, field)
    try:
        for batch in parquet.iter_batches(columns=[field], batch_size=1024):
            for value in batch.column(0).to_pylist():
                if not isinstance(value, str):
                    bad[0] += 1
                elif value:
                    yield value
    except (pa.ArrowException, OSError) as exc:
        bad[0] += 1
        log.warning("%s: stopped reading at a corrupt row group (%s)", path, exc)
    finally:
        parquet.close()
