"""Text measurements shared by the IFEval checkers: sentences, words, language.

The reference checker counts sentences with NLTK's pre-trained English Punkt model and capital words with
`nltk.word_tokenize`; both need the `punkt` data download, which is not available offline. NLTK itself (a project
dependency) ships the Punkt *algorithm* and the Treebank word tokenizer without any data, so we run the same
algorithm with the English model's learned abbreviation, collocation and sentence-starter tables embedded below
(taken from NLTK's `punkt_tab/english` model). The one table left out is the 6,000-word orthographic-context table;
without it Punkt treats every word as never seen, which only matters after an abbreviation, an ellipsis or an initial
followed by a capitalised word (see `tests/test_evals_ifeval.py` for the measured agreement).
"""

from __future__ import annotations

import functools
import re

from nltk.tokenize.destructive import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer


def _table(text: str) -> list[str]:
    """Whitespace-separated entries of an embedded Punkt parameter table."""
    return text.split()


# Learned abbreviation types of NLTK's English Punkt model (punkt_tab/english/abbrev_types.txt), lower case and
# without the final period. Common ones like "e.g", "i.e" and "etc" are *not* in it, so Punkt ends a sentence there.
_ENGLISH_ABBREVIATIONS = _table("""
ct m.j t a.c n.h ms p.a.m dr pa p.m u.k st dec u.s.a lt g.k adm p h.m ga tenn yr sen n.c j.j d.h s.g inc vs s.p.a a.t
n feb sr jan s.a.y n.y col g.f c.o.m.b d ft va r.k e.f chg r.i a.g minn a.h k n.j m l.f f.j gen i.m.s s.a aug j.p okla
m.d.c ltd oct s vt r.a j.c ariz w.w b.v ore h w.r e.h mrs cie corp w n.v a.d r.j ok e.m w.c ill nov u.s prof conn
u.s.s.r mg f.g ph.d g calif messrs h.f wash tues sw bros u.n l wis mr sep d.c ave e.l co s.s reps c r.t h.c r wed a.s
v fla jr r.h c.v m.b.a rep a.a e c.i.t l.a b.f j.b d.w j.k ala f w.va sept mich n.m j.r l.p s.c colo fri a.m g.d kan
maj ky a.m.e n.d t.j cos nev
""")

# Word pairs around a period that the English model learned are not sentence breaks (collocations.tab).
_ENGLISH_COLLOCATIONS = [
    tuple(pair.split("|"))
    for pair in _table("""
##number##|international ##number##|rj ##number##|commodities ##number##|cooper b|stewart ##number##|genentech
##number##|wedgestone i|toussie ##number##|pepper j|fialka o|ludcke ##number##|insider ##number##|aes i|magnin
##number##|credit ##number##|corrections ##number##|financing ##number##|henley ##number##|business
##number##|pay-fone b|wigton b|edelman b|levine ##number##|leisure b|smith j|walter ##number##|pegasus
##number##|dividend j|aron ##number##|review ##number##|abreast ##number##|who ##number##|letters ##number##|colgate
##number##|cbot ##number##|notable ##number##|zimmer
""")
]

# Frequent sentence starters of the English model (sent_starters.txt).
_ENGLISH_SENTENCE_STARTERS = _table("""
most he since so both these it nevertheless this indeed however instead under similarly some though while when in
despite although nonetheless thus there if the nor separately moreover but they yet many according sales among
meanwhile even i
""")


# Abbreviations M-IFEval adds to NLTK's French model for `fr:` prompts (fr_instructions_util._ABBREVIATIONS; the
# entries with spaces are left out, a Punkt token never contains one). The French model's own learned table is not
# available offline.
_FRENCH_ABBREVIATIONS = _table("""
m mr mme mlle dir. dr dre drs dres prof pr cap lt adm. assoc. min. etc cf vs rép i.e c.-à-d ex e.g apr av j.c. j.-c.
j.c j.-c a.d env janv fév mar avr juil sept oct nov déc p.-ê. svp p.-v. p.v tél adj q.v p resp tel v vol nb n.b p.s
ps p.p.s p.-s p-s
""")

# Spanish titles and company suffixes the reference's Spanish rules protect (es_instructions_util).
_SPANISH_ABBREVIATIONS = _table("sr sra srta dr dra st san mr mrs ms prof inc ltd jr co s.a s.l etc ej p.ej pág núm")

_PUNKT_TABLES: dict[str, tuple[set[str], set[tuple[str, ...]], set[str]]] = {
    # ". . " is in the English table too: it makes a spaced ellipsis ". . ." an abbreviation, not a sentence end.
    "en": ({*_ENGLISH_ABBREVIATIONS, ". . "}, set(_ENGLISH_COLLOCATIONS), set(_ENGLISH_SENTENCE_STARTERS)),
    "fr": (set(_FRENCH_ABBREVIATIONS), set(), set()),
    "es": (set(_SPANISH_ABBREVIATIONS), set(), set()),
}


@functools.cache
def _sentence_tokenizer(language: str) -> PunktSentenceTokenizer:
    abbreviations, collocations, starters = _PUNKT_TABLES[language]
    params = PunktParameters()
    params.abbrev_types = set(abbreviations)
    params.collocations = set(collocations)
    params.sent_starters = set(starters)
    return PunktSentenceTokenizer(params)


@functools.lru_cache(maxsize=1)
def _word_tokenizer() -> NLTKWordTokenizer:
    return NLTKWordTokenizer()


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Punkt sentences (no split at bare newlines; for English `e.g.` and `etc.` do end a sentence)."""
    return _sentence_tokenizer(language).tokenize(text)


def split_sentences_by_line(text: str, language: str) -> list[str]:
    """Punkt sentences inside each non-blank line: a line break always ends a sentence.

    Our stand-in for spaCy's parser-based segmentation (M-IFEval Spanish), which also cuts at line breaks of
    markdown-style answers (titles, list items).
    """
    return [sentence for line in text.splitlines() if line.strip() for sentence in split_sentences(line, language)]


def count_sentences(text: str) -> int:
    """Number of Punkt sentences, the unit of `length_constraints:number_sentences`."""
    return len(split_sentences(text))


def count_words(text: str) -> int:
    """Number of `\\w+` runs: IFEval's word unit (hyphenated words and contractions count as two)."""
    return len(re.findall(r"\w+", text))


def word_tokens(text: str) -> list[str]:
    """Treebank word tokens per Punkt sentence: what `nltk.word_tokenize` returns with the English model."""
    tokenizer = _word_tokenizer()
    return [token for sentence in split_sentences(text) for token in tokenizer.tokenize(sentence)]


def detect_language(text: str) -> str | None:
    """ISO 639-1 code from langdetect, or None where it cannot decide (no letters at all).

    The seed is fixed before every call: langdetect is randomised and would otherwise give different answers for
    short or mixed-language texts from one run to the next.
    """
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException:
        return None
