"""Faster versions of datatrove's Gopher repetition, Gopher quality, C4 and FineWeb filters, with datatrove's
thresholds, drop reasons and (for C4) rewritten text.

datatrove's `GopherRepetitionFilter` builds every n-gram as a joined string, nine times per document (top 2/3/4-gram
and duplicated 5..10-gram fractions); on a 10k-character page that is most of the heuristic stage. Here each word is
hashed once, n-grams are rolling 64-bit hashes computed with numpy, and character lengths come from prefix sums;
the duplicated-n-gram walk visits only the n-grams that occur more than once.
The decisions are the same as datatrove's (tested on real pages), with one documented difference: datatrove
joins the words of a duplicated 5..10-gram without separators, so two different word sequences with the same
concatenation ("ab c" / "a bc") count as equal there and not here; on real text this does not occur in practice.

The other three make exactly datatrove's decisions (tested against it on real pages): the Gopher quality filter
classifies each distinct word once (symbol-only? alphabetic?) instead of scanning every character of every word;
C4 skips work that cannot change its answer (the long-word scan on short lines, the citation regex on lines
without "[", sentence splitting once the page has enough sentences) and keeps no per-line counters (datatrove
counts them on the filter object, which the heuristic step never reports); FineWeb tests a line's last character
against a set instead of `endswith` over ~150 stop characters.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, ELLIPSIS, END_PUNCTUATION, POLICY_SUBSTRINGS
from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
from datatrove.utils.text import PUNCTUATION_SET, split_into_sentences, split_into_words

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant for the rolling polynomial hash


def _ngram_hashes(word_hashes: np.ndarray, n: int) -> np.ndarray:
    count = len(word_hashes) - n + 1
    h = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _MULTIPLIER + word_hashes[k : k + count]
    return h


def _runs(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal hashes grouped: (sort order, run lengths, run of each sorted item)."""
    order = np.argsort(hashes)
    ordered = hashes[order]
    new_run = np.empty(len(ordered), dtype=bool)
    new_run[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new_run[1:])
    starts = np.flatnonzero(new_run)
    counts = np.diff(np.append(starts, len(ordered)))
    return order, counts, np.cumsum(new_run) - 1


class RepeatedNgrams:
    """The n-grams of a page (rolling hashes of its words) that occur more than once, for n = 1, 2, ... in turn.

    An n-gram repeated at positions i and j has its (n-1)-grams at i and i+1 repeated too (at j and j+1), so the
    (n+1)-grams are hashed only where two repeated n-grams are adjacent: the candidates shrink fast on real text,
    while every repeated n-gram, with all of its occurrences, stays in them. Positions are kept in text order."""

    def __init__(self, word_hashes: np.ndarray, prefix: np.ndarray):
        self.word_hashes, self.prefix = word_hashes, prefix
        self.n_words = len(word_hashes)
        self._by_n: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def candidates(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (ascending) and hashes of a superset of the repeated n-grams' positions."""
        if n == 1:
            return np.arange(self.n_words), self.word_hashes
        pos, hashes, _ = self.repeated(n - 1)
        keep = pos <= self.n_words - n  # an n-gram fits there
        nxt = np.searchsorted(pos, pos + 1)
        keep &= nxt < len(pos)
        keep[keep] = pos[nxt[keep]] == pos[keep] + 1  # the (n-1)-gram after it is repeated too
        pos = pos[keep]
        with np.errstate(over="ignore"):
            return pos, hashes[keep] * _MULTIPLIER + self.word_hashes[pos + n - 1]

    def repeated(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (ascending), hashes and occurrence counts of the n-grams that occur more than once."""
        if n not in self._by_n:
            pos, hashes = self.candidates(n)
            if len(pos):
                order, counts, run_of = _runs(hashes)
                occurrences = np.empty(len(pos), dtype=counts.dtype)
                occurrences[order] = counts[run_of]
                repeated = occurrences > 1
                self._by_n[n] = (pos[repeated], hashes[repeated], occurrences[repeated])
            else:
                self._by_n[n] = (pos, hashes, pos)
        return self._by_n[n]

    def top_chars(self, n: int) -> int:
        """len(top n-gram joined with spaces) x its count; ties go to the n-gram seen first (as Counter does)."""
        pos, _, counts = self.repeated(n)
        start, best = 0, 1  # every n-gram occurs once: the first one
        if len(pos):
            best = int(counts.max())
            start = int(pos[counts == best].min())
        return (int(self.prefix[start + n] - self.prefix[start]) + n - 1) * best

    def duplicate_chars(self, n: int) -> int:
        """Characters in repeated n-grams, skipping past each repeat, as datatrove's `find_all_duplicate` counts.

        datatrove walks every position: a position whose n-gram was seen adds its length and jumps n ahead, any
        other is remembered and steps one ahead. An n-gram that occurs once can never be "seen" nor make another
        one seen, so only the positions of repeated n-grams are walked (with the same jumps)."""
        if self.n_words - n + 1 <= 0:
            return 0
        pos, hashes, _ = self.repeated(n)
        if not len(pos):
            return 0
        lengths = (self.prefix[pos + n] - self.prefix[pos]).tolist()
        seen: set[int] = set()
        repeated, next_visited = 0, 0
        for i, h, length in zip(pos.tolist(), hashes.tolist(), lengths, strict=True):
            if i < next_visited:  # skipped by the jump after a repeat
                continue
            if h in seen:
                repeated += length
                next_visited = i + n
            else:
                seen.add(h)
        return repeated


def top_ngram_chars(word_hashes: np.ndarray, prefix: np.ndarray, n: int) -> int:
    """len(top n-gram joined with spaces) x its count; ties go to the n-gram seen first (as Counter does)."""
    hashes = _ngram_hashes(word_hashes, n)
    _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
    best = counts.max()
    start = int(first[counts == best].min())
    return (int(prefix[start + n] - prefix[start]) + n - 1) * int(best)


def duplicate_ngram_chars(word_hashes: np.ndarray, prefix: np.ndarray, n: int) -> int:
    """Characters in repeated n-grams, skipping past each repeat, as datatrove's `find_all_duplicate` counts (every
    position walked: the reference for `RepeatedNgrams.duplicate_chars`)."""
    count = len(word_hashes) - n + 1
    if count <= 0:
        return 0
    hashes = _ngram_hashes(word_hashes, n).tolist()
    lengths = (prefix[n:] - prefix[:-n]).tolist()
    seen: set[int] = set()
    repeated, i = 0, 0
    while i < count:
        h = hashes[i]
        if h in seen:
            repeated += lengths[i]
            i += n
        else:
            seen.add(h)
            i += 1
    return repeated


class FastGopherRepetitionFilter(GopherRepetitionFilter):
    name = "👯 Gopher Repetition (hashed)"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        if not text:
            return False, "empty"
        paragraphs = self.paragraph_exp.split(text.strip())
        para_dups, para_chars = find_duplicates(paragraphs)
        if self.dup_para_frac and para_dups / len(paragraphs) > self.dup_para_frac:
            return False, "dup_para_frac"
        if self.dup_para_char_frac and para_chars / len(text) > self.dup_para_char_frac:
            return False, "dup_para_char_frac"
        lines = self._line_splitter.split(text)
        line_dups, line_chars = find_duplicates(lines)
        if self.dup_line_frac and line_dups / len(lines) > self.dup_line_frac:
            return False, "dup_line_frac"
        if self.dup_line_char_frac and line_chars / len(text) > self.dup_line_char_frac:
            return False, "dup_line_char_frac"

        words = split_into_words(text, self.language)
        if not words:
            return True
        word_hashes = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
        prefix = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=len(words)), out=prefix[1:])
        ngrams = RepeatedNgrams(word_hashes, prefix)
        for n, frac in self.top_n_grams:
            if len(words) < n:
                continue
            if ngrams.top_chars(n) / len(text) > frac:
                return False, f"top_{n}_gram"
        for n, frac in self.dup_n_grams:
            if ngrams.duplicate_chars(n) / len(text) > frac:
                return False, f"duplicated_{n}_n_grams"
        return True


# word -> (has a character that is not punctuation, has an alphabetic character); words repeat across pages
_WORD_CLASSES: dict[str, tuple[bool, bool]] = {}
_WORD_CLASSES_MAX = 1_000_000


def _word_class(word: str) -> tuple[bool, bool]:
    cls = (any(ch not in PUNCTUATION_SET for ch in word), any(ch.isalpha() for ch in word))
    if len(_WORD_CLASSES) >= _WORD_CLASSES_MAX:
        _WORD_CLASSES.clear()
    _WORD_CLASSES[word] = cls
    return cls


class FastGopherQualityFilter(GopherQualityFilter):
    """datatrove's Gopher quality rules, counted over the distinct words of a page (same decisions)."""

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        words = split_into_words(text, self.language)
        n_words = len(words)
        counts = Counter(words)
        classes = _WORD_CLASSES
        n_non_symbol = non_symbol_chars = n_alpha = 0
        for word, count in counts.items():
            non_symbol, alpha = classes.get(word) or _word_class(word)
            if non_symbol:
                n_non_symbol += count
                non_symbol_chars += len(word) * count
            if alpha:
                n_alpha += count

        if self.min_doc_words and n_non_symbol < self.min_doc_words:
            return False, "gopher_short_doc"
        if self.max_doc_words and n_non_symbol > self.max_doc_words:
            return False, "gopher_long_doc"

        # np.mean of the lengths: their sum is exact in float64, so this is the same number
        avg_n_words = non_symbol_chars / n_non_symbol if n_non_symbol else float("nan")
        if self.min_avg_word_length and avg_n_words < self.min_avg_word_length:
            return False, "gopher_below_avg_threshold"
        if self.max_avg_word_length and avg_n_words > self.max_avg_word_length:
            return False, "gopher_above_avg_threshold"

        if self.max_symbol_word_ratio and text.count("#") / n_words > self.max_symbol_word_ratio:
            return False, "gopher_too_many_hashes"
        if self.max_symbol_word_ratio and (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio:
            return False, "gopher_too_many_ellipsis"

        lines = text.splitlines()
        if self.max_bullet_lines_ratio:
            bullets = sum(1 for s in lines if s.lstrip().startswith(("•", "-")))
            if bullets / len(lines) > self.max_bullet_lines_ratio:
                return False, "gopher_too_many_bullets"
        if self.max_ellipsis_lines_ratio:
            ellipsis = sum(1 for s in lines if s.rstrip().endswith(("...", "…")))
            if ellipsis / len(lines) > self.max_ellipsis_lines_ratio:
                return False, "gopher_too_many_end_ellipsis"

        if self.max_non_alpha_words_ratio and n_alpha / n_words < self.max_non_alpha_words_ratio:
            return False, "gopher_below_alpha_threshold"

        if self.min_stop_words and sum(1 for w in self.stop_words if w in counts) < self.min_stop_words:
            return False, "gopher_enough_stop_words"
        return True


class FastC4QualityFilter(C4QualityFilter):
    """datatrove's C4 rules (line filtering, whole-page drops, the kept lines as the new text), without the work
    that cannot change the outcome. Sentence splitting (`split_paragraph=False`) is left to datatrove."""

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if not self.split_paragraph:
            return super().filter(doc)
        max_word_length = self.max_word_length
        needed = self.min_num_sentences
        num_sentences = 0
        kept_lines = []
        for line in doc.text.splitlines():
            line = line.strip()
            words = line.split()
            # a word longer than max_word_length needs a line longer than that
            if max_word_length != -1 and len(line) > max_word_length and any(len(w) > max_word_length for w in words):
                continue
            if self.remove_citations and "[" in line:  # every citation pattern starts with "["
                line = CITATION_REGEX.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)):
                continue
            if len(words) < self.min_words_per_line:
                continue
            line_l = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in line_l:
                return False, "lorem_ipsum"
            if self.filter_javascript and "javascript" in line_l:
                continue
            if self.filter_curly_bracket and "{" in line:
                return False, "curly_bracket"
            if self.filter_policy and any(p in line_l for p in POLICY_SUBSTRINGS):
                continue
            # the count is only compared with the minimum: once reached, more sentences change nothing
            if needed != -1 and num_sentences < needed:
                num_sentences += len(split_into_sentences(line, self.language))
            kept_lines.append(line)
        if num_sentences < needed:
            return False, "too_few_sentences"
        doc.text = "\n".join(kept_lines).strip()
        return True


class FastFineWebQualityFilter(FineWebQualityFilter):
    """datatrove's FineWeb rules; a line ends with a stop character when its last character is one (the stop
    characters are single characters; otherwise datatrove's `endswith` is used)."""

    def filter(self, doc) -> bool | tuple[bool, str]:
        if not all(len(c) == 1 for c in self.stop_chars):
            return super().filter(doc)
        stops = frozenset(self.stop_chars)
        text = doc.text
        lines = [line for line in text.split("\n") if line.strip() != ""]
        if len(lines) == 0:
            return False, "empty"
        ratio = sum(1 for line in lines if line[-1] in stops) / len(lines)
        if ratio < self.line_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
            return False, "line_punct_ratio"
        ratio = sum(1 for line in lines if len(line) <= self.short_line_length) / len(lines)
        if ratio > self.short_line_threshold:
            return False, "short_line_ratio"
        ratio = find_duplicates(lines)[1] / len(text.replace("\n", ""))
        if ratio > self.char_duplicates_ratio:
            return False, "char_dup_ratio"
        words = split_into_words(text, self.language)
        if text.count("\n") / len(words) > self.new_line_ratio:
            return False, "list_ratio"
        return True
