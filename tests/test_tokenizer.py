"""Tokenizer: exact byte-level round trips, atomic special tokens, HF save/load, chat template parity, corpora."""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.tokenizer import (
    BOS_ID,
    CHAT_TEMPLATE,
    EOS_ID,
    MIN_VOCAB_SIZE,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    CorpusStats,
    iter_corpus_texts,
    load_tokenizer,
    reasoning_mode,
    render_chat,
    save_tokenizer,
    strip_thinking,
    to_hf_tokenizer,
    train_bpe,
)
from nano2.errors import Nano2Error

SUBJECTS = ["the model", "a small cat", "my neighbour", "the committee", "every student", "this recipe", "our team"]
VERBS = ["reads", "writes", "trains", "measures", "counts", "explains", "builds", "compares", "rejects", "finds"]
OBJECTS = ["the data", "a long report", "three tokens", "the old bridge", "forty apples", "its own errors", "a map"]
TAILS = ["before lunch", "with care", "in the morning", "without asking", "for the third time", "quickly", "again"]
CODE = [
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    if i % 2 == 0:\n        print(i)\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "const greet = (name) => {\n  return `Hello, ${name}!`;\n};\n",
    "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;\n",
    '#include <stdio.h>\nint main(void) {\n\tprintf("%d\\n", 42);\n\treturn 0;\n}\n',
]
NON_LATIN = [
    "Привет, как дела? Сегодня хорошая погода.",
    "Γειά σου κόσμε, η γλώσσα είναι όμορφη.",
    "日本語の文章を少し書きます。東京は大きい都市です。",
    "مرحبا بالعالم، هذه جملة قصيرة.",
    "नमस्ते दुनिया, यह एक छोटा वाक्य है।",
    "Emoji 🎉🚀 and accents: café, naïve, Zürich, São Paulo.",
]


def build_corpus(n: int = 400, seed: int = 0) -> list[str]:
    """A few hundred varied sentences plus code and non-Latin text, deterministic so vocab sizes are stable."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        sentence = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}"
        sentence = sentence[0].upper() + sentence[1:] + rng.choice([".", "!", "?", f" ({i})."])
        texts.append(sentence)
        if i % 4 == 0:
            texts.append(rng.choice(CODE).replace("a", rng.choice("abxy"), 1))
        if i % 5 == 0:
            texts.append(rng.choice(NON_LATIN))
    return texts


@pytest.fixture(scope="module")
def tok():
    return train_bpe(build_corpus(), vocab_size=600)


@pytest.fixture(scope="module")
def saved(tok, tmp_path_factory) -> Path:
    return save_tokenizer(tok, tmp_path_factory.mktemp("tok") / "out")


@pytest.fixture(scope="module")
def hf(saved):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(saved), local_files_only=True)


TRICKY = [
    "",
    " ",
    "  two leading spaces",
    "trailing spaces   ",
    "\n\n\t\r\n",
    "café vs cafe\u0301",  # NFC and NFD must both survive: no normalizer
    "ﬁ ligature and ＦＵＬＬＷＩＤＴＨ",
    "👩‍👩‍👧 family emoji",
    "null \x00 byte",
    "<s> and </s> written as text",
    "a<think>b</think>c",
    "<reserved_639>",
]


# --------------------------------------------------------------------------------------------------- vocab


def test_vocab_rounded_up_and_special_ids_stable(tok):
    assert tok.get_vocab_size() == 640
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert (UNK_ID, BOS_ID, EOS_ID, PAD_ID) == (0, 1, 2, 3)
    assert tok.token_to_id("<reserved_639>") == 639
    assert tok.id_to_token(639) == "<reserved_639>"


@pytest.mark.parametrize(("vocab_size", "round_to", "expected"), [(300, 64, 320), (320, 64, 320), (333, 1, 333)])
def test_vocab_size_rounding(vocab_size, round_to, expected):
    assert train_bpe(build_corpus(60), vocab_size, round_to=round_to).get_vocab_size() == expected


def test_fewer_merges_than_asked_still_pads_to_multiple():
    tok = train_bpe(["ab ab ab", "abc"], vocab_size=1000)
    assert tok.get_vocab_size() == 1024
    assert tok.get_vocab_size(with_added_tokens=False) < 300
    assert tok.decode(tok.encode("abc ab").ids) == "abc ab"


# --------------------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("text", TRICKY + NON_LATIN + CODE)
def test_round_trip_examples(tok, text):
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text())
def test_round_trip_any_text(tok, text):
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text


def test_no_unknown_tokens(tok):
    ids = tok.encode("".join(chr(c) for c in range(1, 0x3000, 7))).ids
    assert UNK_ID not in ids


# --------------------------------------------------------------------------------------------------- specials


@pytest.mark.parametrize("special", [*SPECIAL_TOKENS, "<reserved_620>"])
def test_special_tokens_are_atomic(tok, special):
    assert tok.encode(special).ids == [tok.token_to_id(special)]


def test_special_token_inside_text_is_one_id(tok):
    think = tok.token_to_id("<think>")
    ids = tok.encode("Let me see<think>step one</think>done").ids
    assert ids.count(think) == 1
    assert ids.count(tok.token_to_id("</think>")) == 1


def test_split_special_text_is_not_the_special_id(tok):
    think = tok.token_to_id("<think>")
    pieces = tok.encode("<thi").ids + tok.encode("nk>").ids
    assert think not in pieces
    assert tok.decode(pieces, skip_special_tokens=False) == "<think>"
    for text in ("<thi nk>", "< think>", "<THINK>", "<think >"):
        assert think not in tok.encode(text).ids


def test_skip_special_tokens_drops_only_specials(tok):
    ids = tok.encode("<s>Hello <think>x</think> world</s>").ids
    assert tok.decode(ids) == "Hello x world"


# --------------------------------------------------------------------------------------------------- HF


def test_save_writes_hf_files(saved):
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {p.name for p in saved.iterdir()}
    config = json.loads((saved / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["chat_template"] == CHAT_TEMPLATE
    special = json.loads((saved / "special_tokens_map.json").read_text(encoding="utf-8"))
    assert special == {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def test_auto_tokenizer_gives_same_ids(tok, hf):
    assert (hf.unk_token_id, hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (UNK_ID, BOS_ID, EOS_ID, PAD_ID)
    assert len(hf) == 640
    for text in TRICKY + NON_LATIN + CODE:
        ids = tok.encode(text).ids
        assert hf(text)["input_ids"] == ids
        assert hf.decode(ids, skip_special_tokens=False) == text


def test_load_tokenizer_file_and_directory(tok, saved):
    text = "Round trip through disk: 日本語 <think>ok</think>"
    for path in (saved, saved / "tokenizer.json", str(saved)):
        assert load_tokenizer(path).encode(text).ids == tok.encode(text).ids


USER = {"role": "user", "content": "What is 2 + 3?"}
CONVERSATIONS = {
    "plain_user": [USER],
    "system_no_think": [{"role": "system", "content": "You are terse. /no_think"}, USER],
    "user_no_think_after_system_think": [
        {"role": "system", "content": "/think You help with maths."},
        {"role": "user", "content": "/no_think What is 2 + 3?"},
    ],
    "multi_turn_strips_reasoning": [
        {"role": "system", "content": "Be precise."},
        USER,
        {"role": "assistant", "content": "<think>\n2 plus 3 is 5.\n</think>\n\nIt is 5."},
        {"role": "user", "content": "And times 4? /no_think"},
        {"role": "assistant", "content": "<think>5 * 4</think>20"},
        {"role": "user", "content": "Now think again. /think"},
    ],
    "empty_system": [{"role": "system", "content": ""}, USER],
    "literal_close_tag_is_not_a_switch": [
        {"role": "system", "content": "/no_think"},
        {"role": "user", "content": "What does </think> mean?"},
    ],
    "last_switch_inside_message_wins": [{"role": "user", "content": "/think ... actually /no_think"}],
    "orphan_close_and_unclosed_open": [
        USER,
        {"role": "assistant", "content": "half a thought</think>Answer A"},
        USER,
        {"role": "assistant", "content": "Answer B<think>cut off"},
        USER,
    ],
}


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_chat_template_matches_render_chat(hf, name, add_generation_prompt):
    messages = CONVERSATIONS[name]
    expected = render_chat(messages, add_generation_prompt=add_generation_prompt)
    got = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert got == expected


def test_render_chat_exact_format():
    assert render_chat([USER]) == (
        "<SPECIAL_10>System\n\n<SPECIAL_12>\n"
        "<SPECIAL_11>User\nWhat is 2 + 3?\n<SPECIAL_12>\n"
        "<SPECIAL_11>Assistant\n<think>\n"
    )
    assert render_chat(CONVERSATIONS["system_no_think"]) == (
        "<SPECIAL_10>System\nYou are terse.\n<SPECIAL_12>\n"
        "<SPECIAL_11>User\nWhat is 2 + 3?\n<SPECIAL_12>\n"
        "<SPECIAL_11>Assistant\n<think></think>"
    )
    assert render_chat(CONVERSATIONS["multi_turn_strips_reasoning"]) == (
        "<SPECIAL_10>System\nBe precise.\n<SPECIAL_12>\n"
        "<SPECIAL_11>User\nWhat is 2 + 3?\n<SPECIAL_12>\n"
        "<SPECIAL_11>Assistant\nIt is 5.\n<SPECIAL_12>\n"
        "<SPECIAL_11>User\nAnd times 4?\n<SPECIAL_12>\n"
        "<SPECIAL_11>Assistant\n20\n<SPECIAL_12>\n"
        "<SPECIAL_11>User\nNow think again.\n<SPECIAL_12>\n"
        "<SPECIAL_11>Assistant\n<think>\n"
    )


def test_rendered_chat_uses_atomic_turn_tokens(tok):
    ids = tok.encode(render_chat(CONVERSATIONS["multi_turn_strips_reasoning"])).ids
    assert ids.count(tok.token_to_id("<SPECIAL_11>")) == 6
    assert ids.count(tok.token_to_id("<SPECIAL_12>")) == 6
    assert ids[-2:] == [tok.token_to_id("<think>"), tok.encode("\n").ids[0]]


FRAGMENTS = ["/think", "/no_think", "<think>", "</think>", " ", "\n", "hi", "x/", "no_", "think"]
content = st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join)
turns = st.lists(st.tuples(st.sampled_from(["user", "assistant"]), content), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(system=st.none() | content, turns=turns, add_generation_prompt=st.booleans())
def test_chat_template_parity_property(hf, system, turns, add_generation_prompt):
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": role, "content": text} for role, text in turns
    ]
    got = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert got == render_chat(messages, add_generation_prompt=add_generation_prompt)


def test_reasoning_mode():
    assert reasoning_mode([USER]) is True
    assert reasoning_mode(CONVERSATIONS["system_no_think"]) is False
    assert reasoning_mode(CONVERSATIONS["user_no_think_after_system_think"]) is False
    assert reasoning_mode(CONVERSATIONS["multi_turn_strips_reasoning"]) is True
    assert reasoning_mode(CONVERSATIONS["literal_close_tag_is_not_a_switch"]) is False
    assert reasoning_mode([{"role": "assistant", "content": "/no_think"}]) is True  # assistants cannot switch


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>\nabc\n</think>\n\nAnswer", "Answer"),
        ("Before <think>x</think> after", "Before  after"),
        ("reasoning only</think>final", "final"),
        ("answer <think>never closed", "answer"),
        ("<think>a</think>one<think>b</think>two", "onetwo"),
        ("  no tags  ", "no tags"),
    ],
)
def test_strip_thinking(text, expected):
    assert strip_thinking(text) == expected


# --------------------------------------------------------------------------------------------------- other tokenizers


def test_load_anthropic_tokenizer_json():
    spec = importlib.util.find_spec("anthropic")
    if spec is None or spec.origin is None:
        pytest.skip("anthropic is not installed, so its bundled tokenizer.json is unavailable")
    path = Path(spec.origin).parent / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"this anthropic version ships no tokenizer.json ({path})")
    for where in (path, path.parent):
        tok = load_tokenizer(where)
        assert tok.get_vocab_size() > 10_000
        text = "Hello, world!  Tokenizers round-trip text:\n\tdef f(x): return x * 2  # 日本語 🎉"
        ids = tok.encode(text).ids
        assert len(ids) < len(text)
        assert tok.decode(ids) == text
    with pytest.raises(Nano2Error, match="missing special tokens"):
        to_hf_tokenizer(tok)


@pytest.mark.realdata
def test_train_on_gsm8k_questions(shared_data):
    path = shared_data / "evals" / "gsm8k_train.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"{path} not present in shared data")
    stats = CorpusStats()
    texts = list(iter_corpus_texts(path, field="question", limit=2000, stats=stats))
    assert len(texts) == 2000 == stats.texts
    tok = train_bpe(texts, vocab_size=1000)
    assert tok.get_vocab_size() == 1024
    held_out = list(iter_corpus_texts(path, field="answer", limit=200))
    for text in texts[:200] + held_out:
        assert tok.decode(tok.encode(text).ids) == text
    chars = sum(len(t) for t in texts)
    tokens = sum(len(e.ids) for e in tok.encode_batch(texts))
    assert chars / tokens > 2.0


# --------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("vocab_size", [0, MIN_VOCAB_SIZE - 1, 200])
def test_vocab_too_small(vocab_size):
    with pytest.raises(Nano2Error, match=rf"vocab_size must be an integer >= {MIN_VOCAB_SIZE}"):
        train_bpe(["hello world"], vocab_size)


@pytest.mark.parametrize("texts", [[], ["", ""], iter([])])
def test_empty_corpus(texts):
    with pytest.raises(Nano2Error, match="empty corpus"):
        train_bpe(texts, 600)


def test_bad_corpus_items():
    with pytest.raises(Nano2Error, match="not a single string"):
        train_bpe("hello world", 600)
    with pytest.raises(Nano2Error, match="corpus item 1 is int"):
        train_bpe(["hello", 5], 600)


def test_load_tokenizer_missing(tmp_path):
    with pytest.raises(Nano2Error, match=r"no tokenizer\.json found in directory"):
        load_tokenizer(tmp_path)
    with pytest.raises(Nano2Error, match=r"no tokenizer\.json found at"):
        load_tokenizer(tmp_path / "nope" / "tokenizer.json")


def test_load_tokenizer_malformed(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": 3', encoding="utf-8")
    with pytest.raises(Nano2Error, match=r"not a valid tokenizer\.json"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([{"role": "tool", "content": "x"}], "message 0: unknown role 'tool'"),
        ([USER, {"content": "x"}], "message 1: unknown role None"),
        ([{"role": "user"}], r"message 0 \(user\): content must be a string, got missing"),
        ([{"role": "user", "content": ["x"]}], "content must be a string, got a list"),
        ([USER, {"role": "system", "content": "late"}], "system message is only allowed first"),
        ("hello", "messages must be a list"),
        ([], "messages is empty"),
    ],
)
def test_bad_messages(messages, match):
    with pytest.raises(Nano2Error, match=match):
        render_chat(messages)
    with pytest.raises(Nano2Error, match=match):
        reasoning_mode(messages)


def test_template_rejects_unknown_role(hf):
    from jinja2.exceptions import TemplateError

    with pytest.raises(TemplateError, match="unknown role"):
        hf.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


# --------------------------------------------------------------------------------------------------- corpora


def test_iter_corpus_jsonl_skips_and_counts_bad_lines(tmp_path, caplog):
    lines = [
        b'{"text": "first"}',
        b"not json",
        b'{"other": "missing field"}',
        b'{"text": 5}',
        b'["not", "an", "object"]',
        b'{"text": "bad utf8 \xff"}',
        b"",
        b'{"text": ""}',
        '{"text": "second ünïcode"}'.encode(),
    ]
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(b"\n".join(lines) + b"\n")
    stats = CorpusStats()
    with caplog.at_level(logging.WARNING):
        assert list(iter_corpus_texts(plain, stats=stats)) == ["first", "second ünïcode"]
    assert stats == CorpusStats(files=1, texts=2, skipped=5)
    assert "skipped 5 bad record(s)" in caplog.text

    zipped = tmp_path / "b.jsonl.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    assert list(iter_corpus_texts([zipped])) == ["first", "second ünïcode"]


def test_iter_corpus_txt_parquet_directory_and_limit(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "c.txt").write_text("line one\n\n  \nline two\n", encoding="utf-8")
    pq.write_table(pa.table({"content": ["p1", None, "p2", ""], "id": [1, 2, 3, 4]}), tmp_path / "d.parquet")
    (tmp_path / "notes.md").write_text("ignored", encoding="utf-8")

    assert list(iter_corpus_texts(tmp_path / "c.txt")) == ["line one\n", "line two\n"]
    stats = CorpusStats()
    assert list(iter_corpus_texts(tmp_path / "d.parquet", field="content", stats=stats)) == ["p1", "p2"]
    assert stats.skipped == 1
    both = [tmp_path / "c.txt", tmp_path / "d.parquet"]
    assert list(iter_corpus_texts(both, field="content", limit=3)) == ["line one\n", "line two\n", "p1"]
    assert list(iter_corpus_texts(both, field="content", limit=0)) == []
    with pytest.raises(Nano2Error, match="no column 'text'"):
        iter_corpus_texts(tmp_path)  # directory expansion finds d.parquet, which lacks the default field


def test_iter_corpus_truncated_gzip_does_not_crash(tmp_path):
    data = gzip.compress(b"".join(b'{"text": "row %d"}\n' % i for i in range(2000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    stats = CorpusStats()
    texts = list(iter_corpus_texts(path, stats=stats))
    assert texts and texts[0] == "row 0"
    assert stats.skipped >= 1


def test_iter_corpus_bad_paths(tmp_path):
    with pytest.raises(Nano2Error, match="corpus file not found"):
        iter_corpus_texts(tmp_path / "missing.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(Nano2Error, match="unsupported corpus file type"):
        iter_corpus_texts(tmp_path / "x.csv")
    with pytest.raises(Nano2Error, match="no corpus files"):
        iter_corpus_texts(tmp_path)
    with pytest.raises(Nano2Error, match="limit must be"):
        iter_corpus_texts(tmp_path / "x.csv", limit=-1)
