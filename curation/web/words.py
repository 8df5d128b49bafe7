"""A dependency-free word/sentence tokenizer for datatrove's heuristic filters, per language.

datatrove's Gopher, C4 and FineWeb filters split text with `load_word_tokenizer(language)`, which for English needs
spaCy and for Chinese, Japanese, Thai or Korean needs jieba, SudachiPy, PyThaiNLP or Kiwi. The filters only count
words, symbols and sentences, so a regex tokenizer is enough: words are runs of letters/digits (with inner
apostrophes and hyphens), punctuation marks are their own tokens, and for scripts written without spaces (Han,
Hiragana/Katakana, Thai, Lao, Khmer, Myanmar) every character is a word. Passing an instance as the filters'
`language` argument uses it instead of the default.
"""

from __future__ import annotations

import re

from datatrove.utils.word_tokenizers import WordTokenizer

UNSPACED_LANGUAGES = {"zh", "ja", "th", "lo", "km", "my", "bo"}
_UNSPACED_CHARS = (
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f\u1780-\u17ff\u0f00-\u0fff"  # Myanmar, Khmer, Tibetan
)
_WORD = re.compile(
    rf"\d+(?:[.,:]\d+)+"  # numbers such as 3.5, 1,000 and 12:30 stay one token, as spaCy keeps them
    rf"|[{_UNSPACED_CHARS}]|[^\W{_UNSPACED_CHARS}](?:[^\W{_UNSPACED_CHARS}]|['’\-](?=\w))*|[^\w\s]"
)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？؟।])\s+|(?<=[。！？])")


class RegexWordTokenizer(WordTokenizer):
    """Words, punctuation and sentences by regex; character-level for unspaced scripts."""

    def __init__(self, language: str = "en"):
        super().__init__(language)

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]

    def sent_tokenize(self, text: str) -> list[str]:
        return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


class MemoWordTokenizer(RegexWordTokenizer):
    """Remembers the last text it split: a filter stack (Gopher repetition, Gopher quality, C4, FineWeb) asks for
    the words of the same document four times, and splitting is most of what those filters cost."""

    def __init__(self, language: str = "en"):
        super().__init__(language)
        self._last: dict[str, tuple[str, list]] = {}

    def _memo(self, kind: str, text: str, split) -> list:
        cached = self._last.get(kind)
        if cached is not None and cached[0] is text:
            return cached[1]
        result = split(text)
        self._last[kind] = (text, result)
        return result

    def word_tokenize(self, text: str) -> list[str]:
        return self._memo("words", text, super().word_tokenize)

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return self._memo("spans", text, super().span_tokenize)

    def sent_tokenize(self, text: str) -> list[str]:
        return self._memo("sentences", text, super().sent_tokenize)
