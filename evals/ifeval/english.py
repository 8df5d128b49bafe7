"""The 25 English IFEval instructions (Zhou et al. 2023, arXiv 2311.07911, Table 1), one checker each.

Each checker follows the paper's definition and the reference checker's observable behaviour on the edge cases that
move verdicts (substring keyword counts, `-` lines counting as bullets, `**bold**` counting as a highlight, ...), so
our numbers are comparable with published IFEval scores.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from pydantic import Field

from evals.ifeval.registry import InstructionArgs, NoArgs, compare, register
from evals.ifeval.text import count_sentences, count_words, detect_language, word_tokens

EnglishRelation = Literal["less than", "at least"]


class KeywordsArgs(InstructionArgs):
    keywords: list[str] = Field(min_length=1)


class KeywordFrequencyArgs(InstructionArgs):
    keyword: str = Field(min_length=1)
    frequency: int = Field(ge=0)
    relation: EnglishRelation


class ForbiddenWordsArgs(InstructionArgs):
    forbidden_words: list[str] = Field(min_length=1)


class LetterFrequencyArgs(InstructionArgs):
    letter: str = Field(min_length=1, max_length=1)
    let_frequency: int = Field(ge=0)
    let_relation: EnglishRelation


class LanguageArgs(InstructionArgs):
    language: str = Field(min_length=2)


class SentencesArgs(InstructionArgs):
    num_sentences: int = Field(ge=0)
    relation: EnglishRelation


class ParagraphsArgs(InstructionArgs):
    num_paragraphs: int = Field(ge=1)


class WordsArgs(InstructionArgs):
    num_words: int = Field(ge=0)
    relation: EnglishRelation


class NthParagraphArgs(InstructionArgs):
    num_paragraphs: int = Field(ge=1)
    nth_paragraph: int = Field(ge=1)
    first_word: str = Field(min_length=1)


class PlaceholdersArgs(InstructionArgs):
    num_placeholders: int = Field(ge=0)


class PostscriptArgs(InstructionArgs):
    postscript_marker: str = Field(min_length=1)


class BulletsArgs(InstructionArgs):
    num_bullets: int = Field(ge=0)


class HighlightsArgs(InstructionArgs):
    num_highlights: int = Field(ge=0)


class SectionsArgs(InstructionArgs):
    section_spliter: str = Field(min_length=1)  # sic: the dataset's spelling
    num_sections: int = Field(ge=0)


class RepeatPromptArgs(InstructionArgs):
    prompt_to_repeat: str = Field(min_length=1)


class EndPhraseArgs(InstructionArgs):
    end_phrase: str = Field(min_length=1)


class CapitalWordsArgs(InstructionArgs):
    capital_frequency: int = Field(ge=0)
    capital_relation: EnglishRelation


# ---------------------------------------------------------------------------------------------- shared measurements


def contains_keyword(text: str, keyword: str) -> bool:
    """Case-insensitive substring test (the reference searches the bare keyword, so "art" is found in "party")."""
    return re.search(re.escape(keyword), text, flags=re.IGNORECASE) is not None


def keyword_count(text: str, keyword: str) -> int:
    """Case-insensitive, non-overlapping substring occurrences of `keyword`."""
    return len(re.findall(re.escape(keyword), text, flags=re.IGNORECASE))


def contains_word(text: str, word: str) -> bool:
    """Whole-word, case-insensitive match: forbidding "cat" does not forbid "category"."""
    return re.search(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE) is not None


def placeholder_count(text: str) -> int:
    """Square-bracket placeholders such as [name]; `[]` counts too, as in the reference."""
    return len(re.findall(r"\[.*?\]", text))


def star_bullet_count(text: str) -> int:
    """Markdown `*` bullet lines (a line starting with one `*`, optionally indented)."""
    return len(re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE))


def dash_bullet_count(text: str) -> int:
    """Lines starting with `-` (markdown dash bullets; a `---` rule is counted as well, as the reference does)."""
    return len(re.findall(r"^\s*-.*$", text, flags=re.MULTILINE))


def highlight_count(text: str) -> int:
    """Non-empty `*highlighted*` spans on one line, plus non-empty `**bold**` spans counted once more."""
    single = [span for span in re.findall(r"\*[^\n\*]*\*", text) if span.strip("*").strip()]
    double = [span for span in re.findall(r"\*\*[^\n\*]*\*\*", text) if span[2:-2].strip()]
    return len(single) + len(double)


def section_count(text: str, splitter: str) -> int:
    """Sections opened by `<splitter> <number>` (e.g. "SECTION 1"); text before the first marker is not a section."""
    return len(re.split(rf"\s?{re.escape(splitter)}\s?\d+\s?", text)) - 1


def markdown_paragraph_count(text: str) -> int | None:
    """Paragraphs separated by the `***` divider, or None when an empty paragraph sits between two dividers."""
    paragraphs = re.split(r"\s?\*\*\*\s?", text)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return None
    return count


def first_word_of(paragraph: str) -> str:
    """The first whitespace token, leading quotes removed, cut at the first punctuation mark, lower-cased."""
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    return re.split(r"[.,?!'\"]", word, maxsplit=1)[0].lower()


def postscript_pattern(marker: str) -> str:
    """Regex for a postscript marker (searched in the lower-cased response, anywhere in a line).

    "P.S." and "P.P.S" tolerate a space after each period ("p. s."), as the reference does; other markers match
    literally.
    """
    if marker == "P.P.S":
        return r"\s*p\.\s?p\.\s?s.*$"
    if marker == "P.S.":
        return r"\s*p\.\s?s\..*$"
    return r"\s*" + re.escape(marker.lower()) + r".*$"


def strip_json_fence(text: str) -> str:
    """The response without its ``` / ```json fence (the instruction allows markdown ticks).

    The prefixes are removed one after the other, as the reference does, so "```json```" loses both.
    """
    text = text.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        text = text.removeprefix(prefix)
    return text.removesuffix("```").strip()


def is_json(text: str) -> bool:
    """The text, fence removed, parses as JSON."""
    try:
        json.loads(strip_json_fence(text))
    except ValueError:
        return False
    return True


def split_responses(text: str, separator: str = "******") -> list[str] | None:
    """Non-empty parts between separators, or None when an empty part sits between two separators."""
    parts = text.split(separator)
    kept = []
    for index, part in enumerate(parts):
        if part.strip():
            kept.append(part)
        elif index not in (0, len(parts) - 1):
            return None
    return kept


def language_is(text: str, language: str) -> bool:
    """langdetect agrees with `language`; undecidable text (no letters) counts as followed, like the reference."""
    detected = detect_language(text)
    return detected is None or detected == language


# --------------------------------------------------------------------------------------------------------- checkers


@register("keywords:existence", KeywordsArgs, "Include keywords {keywords} in the response.")
def keywords_existence(args: KeywordsArgs, prompt: str, response: str) -> bool:
    return all(contains_keyword(response, keyword) for keyword in args.keywords)


@register("keywords:frequency", KeywordFrequencyArgs, "The word {keyword} should appear {relation} {N} times.")
def keywords_frequency(args: KeywordFrequencyArgs, prompt: str, response: str) -> bool:
    return compare(keyword_count(response, args.keyword.strip()), args.relation, args.frequency)


@register("keywords:forbidden_words", ForbiddenWordsArgs, "Do not include keywords {forbidden words}.")
def keywords_forbidden_words(args: ForbiddenWordsArgs, prompt: str, response: str) -> bool:
    return not any(contains_word(response, word) for word in args.forbidden_words)


@register("keywords:letter_frequency", LetterFrequencyArgs, "The letter {letter} should appear {relation} {N} times.")
def keywords_letter_frequency(args: LetterFrequencyArgs, prompt: str, response: str) -> bool:
    return compare(response.lower().count(args.letter.lower()), args.let_relation, args.let_frequency)


@register("language:response_language", LanguageArgs, "Your ENTIRE response should be in {language}.")
def response_language(args: LanguageArgs, prompt: str, response: str) -> bool:
    return language_is(response, args.language)


@register("length_constraints:number_sentences", SentencesArgs, "Answer with {relation} {N} sentences.")
def number_sentences(args: SentencesArgs, prompt: str, response: str) -> bool:
    return compare(count_sentences(response), args.relation, args.num_sentences)


@register("length_constraints:number_paragraphs", ParagraphsArgs, "{N} paragraphs separated by the divider ***.")
def number_paragraphs(args: ParagraphsArgs, prompt: str, response: str) -> bool:
    return markdown_paragraph_count(response) == args.num_paragraphs


@register("length_constraints:number_words", WordsArgs, "Answer with {relation} {N} words.")
def number_words(args: WordsArgs, prompt: str, response: str) -> bool:
    return compare(count_words(response), args.relation, args.num_words)


@register(
    "length_constraints:nth_paragraph_first_word",
    NthParagraphArgs,
    "{N} paragraphs separated by two new lines; paragraph {i} must start with word {first_word}.",
)
def nth_paragraph_first_word(args: NthParagraphArgs, prompt: str, response: str) -> bool:
    paragraphs = response.split("\n\n")
    non_empty = sum(1 for paragraph in paragraphs if paragraph.strip())
    # The reference indexes the raw split (empty pieces included) but bounds-checks against the non-empty count.
    if args.nth_paragraph > non_empty or not paragraphs[args.nth_paragraph - 1].strip():
        return False
    first_word = first_word_of(paragraphs[args.nth_paragraph - 1].strip())
    return non_empty == args.num_paragraphs and first_word == args.first_word.lower()


@register("detectable_content:number_placeholders", PlaceholdersArgs, "At least {N} placeholders like [address].")
def number_placeholders(args: PlaceholdersArgs, prompt: str, response: str) -> bool:
    return placeholder_count(response) >= args.num_placeholders


@register("detectable_content:postscript", PostscriptArgs, "At the end, add a postscript starting with {marker}.")
def postscript(args: PostscriptArgs, prompt: str, response: str) -> bool:
    pattern = postscript_pattern(args.postscript_marker.strip())
    return re.search(pattern, response.lower(), flags=re.MULTILINE) is not None


@register("detectable_format:number_bullet_lists", BulletsArgs, "Exactly {N} markdown bullet points.")
def number_bullet_lists(args: BulletsArgs, prompt: str, response: str) -> bool:
    return star_bullet_count(response) + dash_bullet_count(response) == args.num_bullets


@register(
    "detectable_format:constrained_response",
    NoArgs,
    "Answer with one of: My answer is yes. / My answer is no. / My answer is maybe.",
)
def constrained_response(args: NoArgs, prompt: str, response: str) -> bool:
    return any(option in response for option in ("My answer is yes.", "My answer is no.", "My answer is maybe."))


@register("detectable_format:number_highlighted_sections", HighlightsArgs, "Highlight at least {N} *sections*.")
def number_highlighted_sections(args: HighlightsArgs, prompt: str, response: str) -> bool:
    return highlight_count(response) >= args.num_highlights


@register("detectable_format:multiple_sections", SectionsArgs, "{N} sections, each starting with {splitter} X.")
def multiple_sections(args: SectionsArgs, prompt: str, response: str) -> bool:
    return section_count(response, args.section_spliter.strip()) >= args.num_sections


@register("detectable_format:json_format", NoArgs, "Entire output wrapped in JSON format (``` allowed).")
def json_format(args: NoArgs, prompt: str, response: str) -> bool:
    return is_json(response)


@register("detectable_format:title", NoArgs, "A title wrapped in double angular brackets, such as <<poem of joy>>.")
def title(args: NoArgs, prompt: str, response: str) -> bool:
    return any(span.lstrip("<").rstrip(">").strip() for span in re.findall(r"<<([^\n]+)>>", response))


@register("combination:two_responses", NoArgs, "Give two different responses separated by ******.")
def two_responses(args: NoArgs, prompt: str, response: str) -> bool:
    parts = split_responses(response)
    return parts is not None and len(parts) == 2 and parts[0].strip() != parts[1].strip()


@register("combination:repeat_prompt", RepeatPromptArgs, "First repeat the request word for word, then answer.")
def repeat_prompt(args: RepeatPromptArgs, prompt: str, response: str) -> bool:
    return response.strip().lower().startswith(args.prompt_to_repeat.strip().lower())


@register("startend:end_checker", EndPhraseArgs, "Finish your response with this exact phrase {end_phrase}.")
def end_checker(args: EndPhraseArgs, prompt: str, response: str) -> bool:
    return response.strip().strip('"').lower().endswith(args.end_phrase.strip().lower())


@register("startend:quotation", NoArgs, "Wrap your entire response with double quotation marks.")
def quotation(args: NoArgs, prompt: str, response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


@register(
    "change_case:capital_word_frequency",
    CapitalWordsArgs,
    "Words with all capital letters should appear {relation} {N} times.",
)
def capital_word_frequency(args: CapitalWordsArgs, prompt: str, response: str) -> bool:
    capital_words = sum(1 for token in word_tokens(response) if token.isupper())
    return compare(capital_words, args.capital_relation, args.capital_frequency)


@register("change_case:english_capital", NoArgs, "Entire response in English, all capital letters.")
def english_capital(args: NoArgs, prompt: str, response: str) -> bool:
    return response.isupper() and language_is(response, "en")


@register("change_case:english_lowercase", NoArgs, "Entire response in English, all lowercase letters.")
def english_lowercase(args: NoArgs, prompt: str, response: str) -> bool:
    return response.islower() and language_is(response, "en")


@register("punctuation:no_comma", NoArgs, "Refrain from the use of any commas.")
def no_comma(args: NoArgs, prompt: str, response: str) -> bool:
    return "," not in response
