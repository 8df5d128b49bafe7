"""M-IFEval instructions for Spanish (`es:`), French (`fr:`) and Japanese (`ja:`) prompts.

The shared families (keywords, lengths, formats, ...) reuse the English measurements with each language's relation
words, answer options and markers; the language-specific ones (Spanish ñ/ü/tildes and ¿?/¡!, French accents and
tutoiement, Japanese scripts, furigana, sentence endings, ...) follow the M-IFEval definitions.

Where M-IFEval measures with a tokenizer we cannot ship offline (spaCy `es_core_news_sm` for Spanish words and
sentences, janome for Japanese keywords and noun endings), the checker uses the documented approximation named in
its docstring; everything else reproduces the reference behaviour.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, create_model

from evals.ifeval.english import (
    BulletsArgs,
    EndPhraseArgs,
    ForbiddenWordsArgs,
    HighlightsArgs,
    KeywordsArgs,
    LanguageArgs,
    NthParagraphArgs,
    ParagraphsArgs,
    PlaceholdersArgs,
    PostscriptArgs,
    RepeatPromptArgs,
    SectionsArgs,
    contains_keyword,
    contains_word,
    dash_bullet_count,
    first_word_of,
    highlight_count,
    is_json,
    keyword_count,
    language_is,
    markdown_paragraph_count,
    placeholder_count,
    postscript_pattern,
    section_count,
    split_responses,
    star_bullet_count,
)
from evals.ifeval.registry import InstructionArgs, NoArgs, compare, register
from evals.ifeval.text import count_words, split_sentences, split_sentences_by_line, word_tokens

SpanishRelation = Literal["al menos", "como máximo"]
FrenchRelation = Literal["moins de", "au moins"]
JapaneseRelation = Literal["未満", "以上"]


def _relation_args(language: str, relation_type: Any) -> dict[str, type[InstructionArgs]]:
    """kwargs models of the relation-carrying families, with one language's relation words."""
    count = (int, Field(ge=0))
    fields = {
        "keyword_frequency": {"keyword": (str, Field(min_length=1)), "frequency": count, "relation": relation_type},
        "letter_frequency": {
            "letter": (str, Field(min_length=1, max_length=1)),
            "let_frequency": count,
            "let_relation": relation_type,
        },
        "sentences": {"num_sentences": count, "relation": relation_type},
        "words": {"num_words": count, "relation": relation_type},
        "capital_words": {"capital_frequency": count, "capital_relation": relation_type},
    }
    return {
        family: create_model(f"{language}_{family}_args", __base__=InstructionArgs, **spec)
        for family, spec in fields.items()
    }


def _nth_paragraph_ok(args: NthParagraphArgs, response: str, first_word: Callable[[str, str], bool]) -> bool:
    """Shared paragraph rule: `num_paragraphs` non-empty "\\n\\n" paragraphs and the nth one starting right."""
    paragraphs = response.split("\n\n")
    non_empty = sum(1 for paragraph in paragraphs if paragraph.strip())
    if args.nth_paragraph > non_empty or not paragraphs[args.nth_paragraph - 1].strip():
        return False
    return non_empty == args.num_paragraphs and first_word(paragraphs[args.nth_paragraph - 1].strip(), args.first_word)


def _register_shared_latin(prefix: str, relations: dict[str, type[InstructionArgs]]) -> None:
    """Families whose Spanish and French definitions are the English ones with other relation words."""

    @register(f"{prefix}:keywords:existence", KeywordsArgs, "Include the keywords.")
    def keywords_existence(args: KeywordsArgs, prompt: str, response: str) -> bool:
        return all(contains_keyword(response, keyword) for keyword in args.keywords)

    @register(f"{prefix}:keywords:frequency", relations["keyword_frequency"], "Keyword {relation} N times.")
    def keywords_frequency(args, prompt: str, response: str) -> bool:
        return compare(keyword_count(response, args.keyword.strip()), args.relation, args.frequency)

    @register(f"{prefix}:keywords:forbidden_words", ForbiddenWordsArgs, "Do not use these words.")
    def forbidden_words(args: ForbiddenWordsArgs, prompt: str, response: str) -> bool:
        return not any(contains_word(response, word) for word in args.forbidden_words)

    @register(f"{prefix}:keywords:letter_frequency", relations["letter_frequency"], "Letter {relation} N times.")
    def letter_frequency(args, prompt: str, response: str) -> bool:
        return compare(response.lower().count(args.letter.lower()), args.let_relation, args.let_frequency)

    @register(f"{prefix}:language:response_language", LanguageArgs, "Answer entirely in {language}.")
    def response_language(args: LanguageArgs, prompt: str, response: str) -> bool:
        return language_is(response, args.language)

    @register(f"{prefix}:length_constraints:number_paragraphs", ParagraphsArgs, "N paragraphs separated by ***.")
    def number_paragraphs(args: ParagraphsArgs, prompt: str, response: str) -> bool:
        return markdown_paragraph_count(response) == args.num_paragraphs

    @register(f"{prefix}:length_constraints:nth_paragraph_first_word", NthParagraphArgs, "Paragraph i starts with w.")
    def nth_paragraph_first_word(args: NthParagraphArgs, prompt: str, response: str) -> bool:
        return _nth_paragraph_ok(args, response, lambda paragraph, word: first_word_of(paragraph) == word.lower())

    @register(f"{prefix}:detectable_format:json_format", NoArgs, "Entire output in JSON.")
    def json_format(args: NoArgs, prompt: str, response: str) -> bool:
        return is_json(response)

    @register(f"{prefix}:detectable_format:title", NoArgs, "A title in double angular brackets <<title>>.")
    def title(args: NoArgs, prompt: str, response: str) -> bool:
        return any(span.lstrip("<").rstrip(">").strip() for span in re.findall(r"<<([^\n]+)>>", response))

    @register(f"{prefix}:combination:two_responses", NoArgs, "Two different responses separated by ******.")
    def two_responses(args: NoArgs, prompt: str, response: str) -> bool:
        parts = split_responses(response)
        return parts is not None and len(parts) == 2 and parts[0].strip() != parts[1].strip()

    @register(f"{prefix}:combination:repeat_prompt", RepeatPromptArgs, "Repeat the request first, then answer.")
    def repeat_prompt(args: RepeatPromptArgs, prompt: str, response: str) -> bool:
        return response.strip().lower().startswith(args.prompt_to_repeat.strip().lower())

    @register(f"{prefix}:startend:end_checker", EndPhraseArgs, "End with this exact phrase.")
    def end_checker(args: EndPhraseArgs, prompt: str, response: str) -> bool:
        return response.strip().strip('"').lower().endswith(args.end_phrase.strip().lower())

    @register(f"{prefix}:change_case:capital_word_frequency", relations["capital_words"], "Capital words {relation} N.")
    def capital_word_frequency(args, prompt: str, response: str) -> bool:
        capital_words = sum(1 for token in word_tokens(response) if token.isupper())
        return compare(capital_words, args.capital_relation, args.capital_frequency)

    @register(f"{prefix}:punctuation:no_comma", NoArgs, "No commas.")
    def no_comma(args: NoArgs, prompt: str, response: str) -> bool:
        return "," not in response


# ------------------------------------------------------------------------------------------------------------ Spanish

_ES = _relation_args("es", SpanishRelation)
_register_shared_latin("es", _ES)
_SPANISH_ACCENTED = set("áéíóúÁÉÍÓÚ")


class SpanishCountArgs(InstructionArgs):
    """Spanish "at least N" instructions that carry their (always "al menos") relation."""

    relation: SpanishRelation = "al menos"


class SpanishPlaceholdersArgs(PlaceholdersArgs, SpanishCountArgs):
    pass


class SpanishHighlightsArgs(HighlightsArgs, SpanishCountArgs):
    pass


class SpanishSectionsArgs(SectionsArgs, SpanishCountArgs):
    pass


class LetterCountArgs(InstructionArgs):
    let_frequency: int = Field(ge=0)


def spanish_words(text: str) -> list[str]:
    """Word tokens for Spanish counts: letter/digit runs, keeping 3,5 / 1.000 / e-mail style joins in one token.

    Approximates spaCy `es_core_news_sm` non-punctuation tokens (the reference), which we cannot load offline.
    """
    return re.findall(r"\w+(?:[.,'’-]\w+)*", text)


@register("es:length_constraints:number_words", _ES["words"], "Answer with {relation} N words (spaCy-like tokens).")
def es_number_words(args, prompt: str, response: str) -> bool:
    return compare(len(spanish_words(response)), args.relation, args.num_words)


@register("es:length_constraints:number_sentences", _ES["sentences"], "Answer with {relation} N sentences.")
def es_number_sentences(args, prompt: str, response: str) -> bool:
    return compare(len(split_sentences_by_line(response, "es")), args.relation, args.num_sentences)


@register("es:detectable_content:number_placeholders", SpanishPlaceholdersArgs, "At least N [placeholders].")
def es_number_placeholders(args: SpanishPlaceholdersArgs, prompt: str, response: str) -> bool:
    return compare(placeholder_count(response), args.relation, args.num_placeholders)


@register("es:detectable_content:postscript", PostscriptArgs, "End with a postscript starting with P.D. / Nota.")
def es_postscript(args: PostscriptArgs, prompt: str, response: str) -> bool:
    marker = args.postscript_marker.strip()
    pattern = r"\s*p\.\s?d\..*$" if marker == "P.D." else postscript_pattern(marker)
    return re.search(pattern, response.lower(), flags=re.MULTILINE) is not None


@register("es:detectable_format:number_bullet_lists", BulletsArgs, "Exactly N markdown `*` bullet points.")
def es_number_bullet_lists(args: BulletsArgs, prompt: str, response: str) -> bool:
    return star_bullet_count(response) == args.num_bullets  # the Spanish checker counts `*` bullets only


@register("es:detectable_format:constrained_response", NoArgs, "Answer with one of: Sí. / No. / Quizás.")
def es_constrained_response(args: NoArgs, prompt: str, response: str) -> bool:
    return any(option in response for option in ("Sí.", "No.", "Quizás."))


@register("es:detectable_format:number_highlighted_sections", SpanishHighlightsArgs, "Highlight at least N *sections*.")
def es_number_highlighted_sections(args: SpanishHighlightsArgs, prompt: str, response: str) -> bool:
    return compare(highlight_count(response), args.relation, args.num_highlights)


@register("es:detectable_format:multiple_sections", SpanishSectionsArgs, "At least N sections marked SECCIÓN X.")
def es_multiple_sections(args: SpanishSectionsArgs, prompt: str, response: str) -> bool:
    return compare(section_count(response, args.section_spliter.strip()), args.relation, args.num_sections)


@register("es:punctuation:question_marks", NoArgs, "Include a question written ¿...?.")
def es_question_marks(args: NoArgs, prompt: str, response: str) -> bool:
    return any(question.strip() for question in re.findall(r"¿([^?]*)\?", response))


@register("es:punctuation:exclamation_marks", NoArgs, "Include an exclamation written ¡...!.")
def es_exclamation_marks(args: NoArgs, prompt: str, response: str) -> bool:
    return any(exclamation.strip() for exclamation in re.findall(r"¡([^!]*)!", response))


@register("es:startend:quotation", NoArgs, "Wrap the entire response in double quotation marks.")
def es_quotation(args: NoArgs, prompt: str, response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


@register("es:change_case:spanish_capital", NoArgs, "Entire response in Spanish, all capital letters.")
def es_capital(args: NoArgs, prompt: str, response: str) -> bool:
    """All capitals, and Spanish once lower-cased.

    Deliberate difference: M-IFEval runs langdetect on the capitalised text itself, which langdetect almost never
    calls Spanish (all-caps Spanish comes out as pt/ca/vi/en), so the reference check is close to unpassable.
    """
    return response.isupper() and language_is(response.lower(), "es")


@register("es:change_case:spanish_lowercase", NoArgs, "Entire response in Spanish, all lowercase letters.")
def es_lowercase(args: NoArgs, prompt: str, response: str) -> bool:
    return response.islower() and language_is(response, "es")


@register("es:special_character:enie", LetterCountArgs, "Exactly N words containing ñ.")
def es_enie(args: LetterCountArgs, prompt: str, response: str) -> bool:
    return sum(1 for word in spanish_words(response) if "ñ" in word.lower()) == args.let_frequency


@register("es:special_character:dieresis", LetterCountArgs, "Exactly N words containing ü.")
def es_dieresis(args: LetterCountArgs, prompt: str, response: str) -> bool:
    return sum(1 for word in spanish_words(response) if "ü" in word.lower()) == args.let_frequency


@register("es:special_character:tildes", _ES["words"], "{relation} N words with an accent (á é í ó ú).")
def es_tildes(args, prompt: str, response: str) -> bool:
    accented = sum(1 for word in spanish_words(response) if _SPANISH_ACCENTED.intersection(word))
    return compare(accented, args.relation, args.num_words)


# ------------------------------------------------------------------------------------------------------------- French

_FR = _relation_args("fr", FrenchRelation)
_register_shared_latin("fr", _FR)

# Pronouns and possessives that only the informal "tu" address uses.
_TUTOIEMENT = re.compile(r"\btu\b|\bte\b|\bt'\b|\btoi\b|\bton\b|\bta\b|\btes\b", flags=re.IGNORECASE)
_FRENCH_ACCENTED = re.compile(r"[àáâãäåçèéêëìíîïñòóôõöùúûüýÿÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝ]")


class AccentsArgs(InstructionArgs):
    word_to_accentuate: dict[str, str] = Field(min_length=1)


class ForbiddenCharArgs(InstructionArgs):
    forbidden_char: str = Field(min_length=1)


def strip_accents(word: str) -> str:
    """The word with combining diacritics removed after NFKD (é -> e, ç -> c), as M-IFEval's remove_accents."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


@register("fr:length_constraints:number_words", _FR["words"], "Answer with {relation} N words.")
def fr_number_words(args, prompt: str, response: str) -> bool:
    return compare(count_words(response), args.relation, args.num_words)


@register("fr:length_constraints:number_sentences", _FR["sentences"], "Answer with {relation} N sentences.")
def fr_number_sentences(args, prompt: str, response: str) -> bool:
    return compare(len(split_sentences(response, "fr")), args.relation, args.num_sentences)


@register("fr:detectable_content:number_placeholders", PlaceholdersArgs, "At least N [placeholders].")
def fr_number_placeholders(args: PlaceholdersArgs, prompt: str, response: str) -> bool:
    return placeholder_count(response) >= args.num_placeholders


@register("fr:detectable_content:postscript", PostscriptArgs, "End with a postscript starting with the marker.")
def fr_postscript(args: PostscriptArgs, prompt: str, response: str) -> bool:
    pattern = postscript_pattern(args.postscript_marker.strip())
    return re.search(pattern, response.lower(), flags=re.MULTILINE) is not None


@register("fr:detectable_format:number_bullet_lists", BulletsArgs, "Exactly N markdown bullet points.")
def fr_number_bullet_lists(args: BulletsArgs, prompt: str, response: str) -> bool:
    return star_bullet_count(response) + dash_bullet_count(response) == args.num_bullets


@register("fr:detectable_format:constrained_response", NoArgs, "Answer with one of: Oui. / Non. / Peut-être.")
def fr_constrained_response(args: NoArgs, prompt: str, response: str) -> bool:
    return any(option in response for option in ("Oui.", "Non.", "Peut-être."))


@register("fr:detectable_format:number_highlighted_sections", HighlightsArgs, "Highlight at least N *sections*.")
def fr_number_highlighted_sections(args: HighlightsArgs, prompt: str, response: str) -> bool:
    return highlight_count(response) >= args.num_highlights


@register("fr:detectable_format:multiple_sections", SectionsArgs, "At least N sections marked SECTION X.")
def fr_multiple_sections(args: SectionsArgs, prompt: str, response: str) -> bool:
    return section_count(response, args.section_spliter.strip()) >= args.num_sections


@register("fr:startend:quotation", NoArgs, "Wrap the entire response in quotes: \"...\", '...' or «...».")
def fr_quotation(args: NoArgs, prompt: str, response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and any(text[0] == left and text[-1] == right for left, right in ('""', "''", "«»"))


@register("fr:change_case:french_capital", NoArgs, "Entire response in French, all capital letters.")
def fr_capital(args: NoArgs, prompt: str, response: str) -> bool:
    """All capitals, and French once lower-cased (same deliberate difference as `es:change_case:spanish_capital`)."""
    return response.isupper() and language_is(response.lower(), "fr")


@register("fr:change_case:french_lowercase", NoArgs, "Entire response in French, all lowercase letters.")
def fr_lowercase(args: NoArgs, prompt: str, response: str) -> bool:
    return response.islower() and language_is(response, "fr")


@register("fr:detectable_content:informal_address", NoArgs, "Address the reader informally (tutoiement).")
def fr_informal_address(args: NoArgs, prompt: str, response: str) -> bool:
    return _TUTOIEMENT.search(response) is not None


@register("fr:detectable_content:no_digits", NoArgs, "Write numbers in words: no digits.")
def fr_no_digits(args: NoArgs, prompt: str, response: str) -> bool:
    return re.search(r"\d", response) is None


@register("fr:special_character:ethel_or_cedilla", ForbiddenCharArgs, "Do not use the character ç / œ.")
def fr_ethel_or_cedilla(args: ForbiddenCharArgs, prompt: str, response: str) -> bool:
    return re.search(re.escape(args.forbidden_char), response, flags=re.IGNORECASE) is None


@register("fr:special_character:no_accents", NoArgs, "Do not use any accented letter.")
def fr_no_accents(args: NoArgs, prompt: str, response: str) -> bool:
    return _FRENCH_ACCENTED.search(response) is None


@register("fr:special_character:accents", AccentsArgs, "Rewrite the text with its accents restored.")
def fr_accents(args: AccentsArgs, prompt: str, response: str) -> bool:
    """Every occurrence of a target word (compared without accents) carries exactly the expected accents."""
    targets = args.word_to_accentuate
    for word in re.findall(r"\b\w+\b", response.lower()):
        expected = targets.get(strip_accents(word))
        if expected is not None and word != expected:
            return False
    return True


# ----------------------------------------------------------------------------------------------------------- Japanese

_JA = _relation_args("ja", JapaneseRelation)
_KANJI = r"[\u4e00-\u9faf]"
_JAPANESE_SENTENCE_END = "。!?"


class JapaneseLetterFrequencyArgs(InstructionArgs):
    letter: str = Field(min_length=1, max_length=1)
    let_frequency: int = Field(ge=0)
    let_relation: JapaneseRelation


class LettersArgs(InstructionArgs):
    num_letters: int = Field(ge=0)
    relation: JapaneseRelation


class KanjiLimitArgs(InstructionArgs):
    kanji_limit: int = Field(ge=0)
    relation: JapaneseRelation


class NumberedItemsArgs(InstructionArgs):
    num_items: int = Field(ge=0)


class NominalEndingArgs(InstructionArgs):
    count: int = Field(ge=0)


class SentenceEndingArgs(InstructionArgs):
    ending: str = Field(min_length=1)


_JAPANESE_PUNCTUATION = str.maketrans({"！": "!", "？": "?", "（": "(", "）": ")", "｡": "。", "｢": "「", "｣": "」"})


def _normalise_japanese_punctuation(text: str) -> str:
    """The part of the neologd normalisation that moves sentence counts: full-width ！？（）and half-width ｡｢｣."""
    return text.strip().translate(_JAPANESE_PUNCTUATION)


def japanese_sentences(text: str) -> list[str]:
    """Sentences as M-IFEval's ja_sentence_segmenter pipeline cuts them.

    Lines are split at line breaks, a line ending in の is joined to the next, then each line is cut after every
    。 ! ? that is not inside 「...」 or (...). Blank lines disappear; a line of spaces stays a sentence.
    """
    lines = _normalise_japanese_punctuation(text).splitlines()
    joined: list[str] = []
    for line in lines:
        if joined and joined[-1].endswith("の"):
            joined[-1] += line
        else:
            joined.append(line)
    protected = re.compile(r"「[^「」]*」|\([^()]*\)")
    sentences = []
    for line in joined:
        guarded = protected.sub(lambda match: match.group().translate(str.maketrans("。!?", "\0\1\2")), line)
        cut = re.sub(f"([{_JAPANESE_SENTENCE_END}])", "\\1\n", guarded)
        sentences += [part.translate(str.maketrans("\0\1\2", "。!?")) for part in cut.splitlines()]
    return sentences


def _without_quotes(text: str) -> str:
    return re.sub(r"『.*?』", "", re.sub(r"「.*?」", "", text))


def nominal_ending_count(text: str) -> int:
    """Sentences (outside quotes) ending in a noun before 。！？ (taigen-dome).

    The reference asks janome whether the token before the mark is a noun; without a morphological analyser we take
    a kanji, katakana, latin letter or digit right before the mark as a noun ending (Japanese verbs, adjectives and
    auxiliaries end in hiragana), which agrees on the ordinary cases and misses nouns written in hiragana.
    """
    endings = re.findall(r"([^\s。！？!?])[。！？]", _without_quotes(text))
    return sum(1 for char in endings if re.match(rf"{_KANJI}|[ァ-ヺー]|[A-Za-z0-9Ａ-Ｚａ-ｚ０-９]", char))


@register("ja:keywords:existence", KeywordsArgs, "Include the keywords (substring match).")
def ja_keywords_existence(args: KeywordsArgs, prompt: str, response: str) -> bool:
    """Substring presence: the reference matches janome tokens, which never finds a multi-token keyword."""
    return all(keyword in response for keyword in args.keywords)


@register("ja:keywords:frequency", _JA["keyword_frequency"], "Keyword {relation} N times (substring count).")
def ja_keywords_frequency(args, prompt: str, response: str) -> bool:
    return compare(response.count(args.keyword.strip()), args.relation, args.frequency)


@register("ja:keywords:forbidden_words", ForbiddenWordsArgs, "Do not use these words (substring match).")
def ja_forbidden_words(args: ForbiddenWordsArgs, prompt: str, response: str) -> bool:
    return not any(word in response for word in args.forbidden_words)


@register("ja:keywords:letter_frequency", JapaneseLetterFrequencyArgs, "Kana {relation} N times (hiragana+katakana).")
def ja_letter_frequency(args: JapaneseLetterFrequencyArgs, prompt: str, response: str) -> bool:
    katakana = chr(ord(args.letter) + 0x60) if "ぁ" <= args.letter <= "ゖ" else args.letter
    count = response.count(args.letter) + (response.count(katakana) if katakana != args.letter else 0)
    return compare(count, args.let_relation, args.let_frequency)


@register("ja:language:response_language", LanguageArgs, "Answer entirely in {language}.")
def ja_response_language(args: LanguageArgs, prompt: str, response: str) -> bool:
    return language_is(response, args.language)


@register("ja:length_constraints:number_sentences", _JA["sentences"], "Answer in {relation} N sentences.")
def ja_number_sentences(args, prompt: str, response: str) -> bool:
    return compare(len(japanese_sentences(response)), args.relation, args.num_sentences)


@register("ja:length_constraints:number_paragraphs", ParagraphsArgs, "N paragraphs separated by ***.")
def ja_number_paragraphs(args: ParagraphsArgs, prompt: str, response: str) -> bool:
    return markdown_paragraph_count(response) == args.num_paragraphs


@register("ja:length_constraints:number_letters", LettersArgs, "Answer in {relation} N characters.")
def ja_number_letters(args: LettersArgs, prompt: str, response: str) -> bool:
    return compare(len(response), args.relation, args.num_letters)


@register("ja:length_constraints:nth_paragraph_first_word", NthParagraphArgs, "Paragraph i starts with the word.")
def ja_nth_paragraph_first_word(args: NthParagraphArgs, prompt: str, response: str) -> bool:
    def starts_with(paragraph: str, word: str) -> bool:
        return paragraph.lstrip("「").lstrip("『").startswith(word.lower())

    return _nth_paragraph_ok(args, response, starts_with)


@register("ja:detectable_content:number_placeholders", PlaceholdersArgs, "At least N [placeholders].")
def ja_number_placeholders(args: PlaceholdersArgs, prompt: str, response: str) -> bool:
    return placeholder_count(response) >= args.num_placeholders


@register("ja:detectable_content:postscript", PostscriptArgs, "End with a postscript starting with P.S. / 追伸.")
def ja_postscript(args: PostscriptArgs, prompt: str, response: str) -> bool:
    marker = args.postscript_marker.strip()
    pattern = postscript_pattern(marker) if marker in ("P.P.S", "P.S.") else r"\s*" + re.escape(marker) + r".*$"
    return re.search(pattern, response, flags=re.IGNORECASE | re.MULTILINE) is not None


@register("ja:detectable_format:number_bullet_lists", BulletsArgs, "Exactly N ・ bullet points.")
def ja_number_bullet_lists(args: BulletsArgs, prompt: str, response: str) -> bool:
    return len(re.findall(r"^\s*・[^・].*$", response, flags=re.MULTILINE)) == args.num_bullets


@register("ja:detectable_format:number_numbered_lists", NumberedItemsArgs, "Exactly N numbered items `1. ...`.")
def ja_number_numbered_lists(args: NumberedItemsArgs, prompt: str, response: str) -> bool:
    return len(re.findall(r"^\s*\d+\.\s.*$", response, flags=re.MULTILINE)) == args.num_items


@register("ja:detectable_format:constrained_response", NoArgs, "Answer with one of the three fixed Japanese options.")
def ja_constrained_response(args: NoArgs, prompt: str, response: str) -> bool:
    return any(option in response for option in ("はい、そうです。", "いいえ、違います。", "どちらとも言えません。"))


@register("ja:detectable_format:number_highlighted_sections", HighlightsArgs, "Highlight at least N 《sections》.")
def ja_number_highlighted_sections(args: HighlightsArgs, prompt: str, response: str) -> bool:
    spans = re.findall(r"《([^\n《》]*)》", response)
    return sum(1 for span in spans if span.strip()) >= args.num_highlights


@register("ja:detectable_format:multiple_sections", SectionsArgs, "At least N sections headed 第1章 / 第1節 ...")
def ja_multiple_sections(args: SectionsArgs, prompt: str, response: str) -> bool:
    splitter = re.escape(args.section_spliter.strip())
    return len(re.split(rf"\s?第[\d\uFF10-\uFF19]+{splitter}\s?", response)) - 1 >= args.num_sections


@register("ja:detectable_format:json_format", NoArgs, "Entire output in JSON.")
def ja_json_format(args: NoArgs, prompt: str, response: str) -> bool:
    return is_json(response)


@register("ja:detectable_format:title", NoArgs, "A title in double corner brackets 『title』.")
def ja_title(args: NoArgs, prompt: str, response: str) -> bool:
    return any(span.lstrip("『").rstrip("』").strip() for span in re.findall(r"『([^\n]+)』", response))


@register("ja:detectable_format:nominal_ending", NominalEndingArgs, "Use noun-ending sentences at least N times.")
def ja_nominal_ending(args: NominalEndingArgs, prompt: str, response: str) -> bool:
    return nominal_ending_count(response) >= args.count


@register("ja:combination:two_responses", NoArgs, "Two different responses separated by ******.")
def ja_two_responses(args: NoArgs, prompt: str, response: str) -> bool:
    parts = split_responses(response)
    return parts is not None and len(parts) == 2 and parts[0].strip() != parts[1].strip()


@register("ja:combination:repeat_prompt", RepeatPromptArgs, "Repeat the request first (exactly), then answer.")
def ja_repeat_prompt(args: RepeatPromptArgs, prompt: str, response: str) -> bool:
    return response.strip().startswith(args.prompt_to_repeat.strip())


@register("ja:startend:end_checker", EndPhraseArgs, "End with this exact phrase.")
def ja_end_checker(args: EndPhraseArgs, prompt: str, response: str) -> bool:
    return response.strip().strip("」』").endswith(args.end_phrase.strip().strip("」』"))


@register("ja:startend:quotation", NoArgs, "Wrap the entire response in 「」.")
def ja_quotation(args: NoArgs, prompt: str, response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] == "「" and text[-1] == "」"


@register("ja:startend:sentence_unified_end", SentenceEndingArgs, "Every sentence ends with the given ending.")
def ja_sentence_unified_end(args: SentenceEndingArgs, prompt: str, response: str) -> bool:
    pieces = re.split(r"[。！？]", _without_quotes(response))
    return all(piece.endswith(args.ending) for piece in pieces if piece)


@register("ja:letters:furigana", NoArgs, "Every kanji run followed by its reading in full-width brackets （ふりがな）.")
def ja_furigana(args: NoArgs, prompt: str, response: str) -> bool:
    runs = re.findall(rf"{_KANJI}+", response)
    annotated = re.findall(rf"{_KANJI}+（[ぁ-ん]+）", response)
    return len(runs) == len(annotated)


@register("ja:letters:kansuuji", NoArgs, "All numbers in kanji numerals: no digits.")
def ja_kansuuji(args: NoArgs, prompt: str, response: str) -> bool:
    return re.search(r"\d", response) is None


@register("ja:letters:no_katakana", NoArgs, "No katakana at all.")
def ja_no_katakana(args: NoArgs, prompt: str, response: str) -> bool:
    return not any("ァ" <= char <= "ヺ" or "ｦ" <= char <= "ﾟ" for char in response)


@register("ja:letters:katakana_only", NoArgs, "Only katakana letters (punctuation and symbols allowed).")
def ja_katakana_only(args: NoArgs, prompt: str, response: str) -> bool:
    def allowed(char: str) -> bool:
        katakana = "ァ" <= char <= "ン" or char in "ー・" or "ｦ" <= char <= "ﾟ"
        return katakana or not unicodedata.category(char).startswith("L")

    return all(allowed(char) for char in response)


@register("ja:letters:no_hiragana", NoArgs, "No hiragana at all.")
def ja_no_hiragana(args: NoArgs, prompt: str, response: str) -> bool:
    return not any("ぁ" <= char <= "ゖ" for char in response)


@register("ja:letters:hiragana_only", NoArgs, "Only hiragana letters (punctuation and symbols allowed).")
def ja_hiragana_only(args: NoArgs, prompt: str, response: str) -> bool:
    def allowed(char: str) -> bool:
        return "ぁ" <= char <= "ん" or char == "ー" or not unicodedata.category(char).startswith("L")

    return all(allowed(char) for char in response)


@register("ja:letters:kanji", KanjiLimitArgs, "Use {relation} N kanji.")
def ja_kanji(args: KanjiLimitArgs, prompt: str, response: str) -> bool:
    return compare(len(re.findall(_KANJI, response)), args.relation, args.kanji_limit)


@register("ja:punctuation:no_comma", NoArgs, "No 、 (Japanese comma).")
def ja_no_comma(args: NoArgs, prompt: str, response: str) -> bool:
    return "、" not in response


@register("ja:punctuation:no_period", NoArgs, "No 。 (Japanese full stop).")
def ja_no_period(args: NoArgs, prompt: str, response: str) -> bool:
    return "。" not in response
