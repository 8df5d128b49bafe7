"""Math answers: extraction of the final answer and equivalence with the gold, for every math verdict we give.

One rule for SFT data filtering (synthetic/tasks/reasoning.py), the GRPO reward (train/rewards.py) and the eval
score (evals/), checked against the benchmarks' own gold in tests/test_evals_gold.py: if the three used their own
parsers, one answer could be kept for training, rewarded and still scored wrong.

Extraction takes the model's *final* answer by fixed precedence: the last balanced `\\boxed{...}` (also `\\fbox`,
`\\framebox`), then the last `#### N` line (GSM8K), then the last "the answer is ..." / "final answer: ...", then the
last number in the text. Digits in any script (Bengali, Thai, full-width, ...) are read as ASCII digits, so the
same rules work for every MGSM language. The first two rules are an answer the response *states* (`STATED_RULES`).

Equivalence is exact rational comparison when both sides are plain numbers (thousands separators understood), then
`math_verify` (symbolic: fractions, radicals, tuples, intervals, ...; called as `verify(gold, pred)`, gold first),
then a normalised string comparison for text answers (`\\text{Evelyn}`, `(C)`). A prediction number whose separator
is ambiguous ("1.000", "1,000": German thousands or English thousands vs a decimal) is correct if any reading equals
the gold; gold answers use the English convention (comma thousands, dot decimal) as the data files do.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox|framebox)(?![A-Za-z])")
_HASH_ANSWER = re.compile(r"####\s*([^\n]*)")
_ANSWER_PHRASE = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|was|would\s+be|will\s+be|:|=)\s*[:：]?\s*(?:therefore\s*)?",
    re.IGNORECASE,
)
# A number as written in running text: optional sign, digit groups with thousands separators (comma, dot, apostrophe,
# thin/no-break spaces) or a plain run of digits, an optional decimal part, an optional "/denominator".
_NUMBER = re.compile(
    r"(?:(?<![\w.,])([-−–])|(?<![\d.,]))"  # a sign only when it is not a hyphen inside a word ("COVID-19")
    r"(\d{1,3}(?:[,.'\u00a0\u202f\u2009]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?|[.,]\d+)"
    r"(?:\s*/\s*(\d+)(?![\d.,]))?"
)
_FULLWIDTH = str.maketrans({"，": ",", "．": ".", "－": "-", "−": "-", "／": "/"})


STATED_RULES = ("boxed", "hashes")
"""Extraction rules by which a response states its final answer explicitly (a box or a `#### N` line)."""


@dataclass(frozen=True)
class MathScore:
    """One scored response: `predicted` is the extracted answer (None when nothing was found), `rule` says how."""

    correct: bool
    predicted: str | None
    rule: str

    @property
    def stated(self) -> bool:
        """Whether the response stated its answer (boxed or `####`) rather than leaving it to be inferred."""
        return self.rule in STATED_RULES


def to_ascii_digits(text: str) -> str:
    """Replace decimal digits of any script (and full-width , . - /) by their ASCII forms; everything else is kept."""
    if text.isascii():
        return text
    out = []
    for char in text:
        if char.isdecimal() and not char.isascii():
            out.append(str(unicodedata.decimal(char)))
        else:
            out.append(char)
    return "".join(out).translate(_FULLWIDTH)


def _balanced_group(text: str, start: int) -> tuple[str, int] | None:
    """Given text[start] == '{', return the content up to the matching '}' and the index after it."""
    depth = 0
    for index in range(start, len(text)):
        char = text[index]
        if char == "\\":  # an escaped brace (\{ or \}) does not open or close a group
            continue
        if char == "{" and (index == 0 or text[index - 1] != "\\"):
            depth += 1
        elif char == "}" and (index == 0 or text[index - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return text[start + 1 : index], index + 1
    return None


def _boxes(text: str) -> list[str | None]:
    """Every box command in order: its content, or None when its braces never close (a truncated output)."""
    found: list[str | None] = []
    for match in _BOX_COMMAND.finditer(text):
        index = match.end()
        while index < len(text) and text[index] == " ":
            index += 1
        if index < len(text) and text[index] == "[":  # \framebox[width][pos]{...}
            close = text.find("]", index)
            if close < 0:
                found.append(None)
                continue
            index = close + 1
        if index < len(text) and text[index] == "{":
            group = _balanced_group(text, index)
            found.append(group[0].strip() if group is not None else None)
        elif match.end() < len(text) and text[match.end()] == " ":  # `\boxed 5`: one bare token
            token = re.match(r"\s*([^\s$]+)", text[match.end() :])
            if token:
                found.append(token.group(1))
        elif index >= len(text):  # the output ends right after the command
            found.append(None)
    return found


def boxed_contents(text: str) -> list[str]:
    """Contents of every balanced `\\boxed{...}`, `\\fbox{...}`, `\\framebox[..]{...}` (and `\\boxed 5`), in order."""
    return [box for box in _boxes(text) if box is not None]


def last_boxed(text: str) -> str | None:
    """The last balanced boxed answer, or None."""
    boxes = boxed_contents(text)
    return boxes[-1] if boxes else None


def _phrase_answer(rest: str) -> str | None:
    """What follows "the answer is": a $...$ / \\(...\\) math span; else the clause when it is LaTeX-like
    (`\\frac{1}{2}`); else the clause's first number; else the clause as a text answer ("Evelyn") when no number
    follows anywhere (otherwise "the answer is not obvious ... 3 + 4 = 7" is left to the later rules)."""
    rest = rest.strip()
    if not rest:
        return None
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(opener):
            closing = re.compile(r"(?<!\\)" + re.escape(closer))  # \$ inside the span is a dollar sign
            end = closing.search(rest, len(opener))
            if end and end.start() > len(opener):
                return rest[len(opener) : end.start()].strip()
    line = rest.split("\n", 1)[0]
    clause = re.split(r"(?<=[^\d])[.;](?:\s|$)", line, maxsplit=1)[0].strip().rstrip(".").strip()
    if re.search(r"\\[A-Za-z]|[\^{}_]", clause):
        return clause
    number = _NUMBER.search(to_ascii_digits(clause))
    if number:
        return _number_text(number)
    if clause and not any(char.isdecimal() for char in rest):
        return clause
    return None


def _number_text(match: re.Match[str]) -> str:
    sign = "-" if match.group(1) else ""
    text = sign + match.group(2)
    return f"{text}/{match.group(3)}" if match.group(3) else text


def last_number(text: str) -> str | None:
    """The last number written in the text (any script's digits), as ASCII text, or None."""
    matches = list(_NUMBER.finditer(to_ascii_digits(text)))
    return _number_text(matches[-1]) if matches else None


def extract_answer(text: str) -> tuple[str | None, str]:
    """The final answer of a response and the rule that found it: boxed, hashes, phrase, last_number, none, or
    truncated_boxed (the output ends inside its last box)."""
    if not text:
        return None, "none"
    boxes = _boxes(text)
    if boxes and boxes[-1] is None:  # cut off inside the final box: no answer, not an earlier number
        return None, "truncated_boxed"
    boxed = boxes[-1] if boxes else None
    if boxed:
        return boxed, "boxed"
    hashes = _HASH_ANSWER.findall(text)
    if hashes and hashes[-1].strip():
        return hashes[-1].strip(), "hashes"
    phrases = list(_ANSWER_PHRASE.finditer(text))
    for phrase in reversed(phrases):
        answer = _phrase_answer(text[phrase.end() :])
        if answer:
            return answer, "phrase"
    number = last_number(text)
    if number is not None:
        return number, "last_number"
    return None, "none"


def stated_answer(text: str) -> str | None:
    """The final answer when the response states it (`STATED_RULES`), else None (a phrase or a bare number)."""
    predicted, rule = extract_answer(text)
    return predicted if rule in STATED_RULES else None


# ---------------------------------------------------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------------------------------------------------


def _decimal_readings(body: str) -> set[Fraction]:
    """Every value a digit string with separators can mean (one for unambiguous text, two for "1.000")."""
    for space in "\u00a0\u202f\u2009'":
        body = body.replace(space, "")
    commas, dots = body.count(","), body.count(".")
    readings: list[str]
    if commas and dots:  # the later separator is the decimal point: 1,234.5 and 1.234,5
        decimal = "," if body.rfind(",") > body.rfind(".") else "."
        group = "." if decimal == "," else ","
        readings = [body.replace(group, "").replace(decimal, ".")]
    elif commas + dots == 0:
        readings = [body]
    else:
        separator = "," if commas else "."
        parts = body.split(separator)
        if len(parts) > 2:  # repeated separator: thousands groups
            readings = [body.replace(separator, "")]
        elif len(parts[1]) == 3 and parts[0] not in ("", "0", "-0"):  # 1,000 or 1.000: both readings
            readings = [body.replace(separator, ""), body.replace(separator, ".")]
        else:
            readings = [body.replace(separator, ".")]
    values = set()
    for reading in readings:
        try:
            values.add(Fraction(reading))
        except (ValueError, ZeroDivisionError):
            continue
    return values


_PLAIN_NUMBER = re.compile(
    r"([-−–]?)\s*(\d{1,3}(?:[,.'\u00a0\u202f\u2009]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?|[.,]\d+)(?:\s*/\s*(\d+))?"
)
_UNIT_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{[^{}]*\}")


_WHOLE_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\{(.*)\}")


def _unwrap_text(text: str) -> str:
    """`\\textbf{(073)}` -> `073`: an answer that is entirely one text wrapper (or parenthesised) is its content."""
    while True:
        match = _WHOLE_WRAPPER.fullmatch(text.strip())
        inner = match.group(1) if match else None
        if inner is not None and _balanced_group("{" + inner + "}", 0) == (inner, len(inner) + 2):
            text = inner
            continue
        stripped = text.strip()
        if stripped.startswith("(") and stripped.endswith(")") and not re.search(r"[(,;]", stripped[1:-1]):
            text = stripped[1:-1]
            continue
        return text.strip()


def number_readings(text: str) -> set[Fraction] | None:
    """Values of an answer that is a plain number ("1,600", "$18", "25%", "-3", "0.5", "3/4"); None otherwise."""
    cleaned = _unwrap_text(to_ascii_digits(text).strip())
    cleaned = _UNIT_WRAPPERS.sub("", cleaned)  # 18 \text{ dollars}
    cleaned = re.sub(r"\\[$%!,;: ]|\\(?:left|right|displaystyle)|[$%€£¥]|\^\{?\\circ\}?|\\circ", "", cleaned)
    cleaned = cleaned.replace("{,}", ",").replace("{.}", ".")  # LaTeX 1{,}000
    if "\\" in cleaned or "{" in cleaned:  # LaTeX structure left (\frac, \sqrt, ...): not a plain number
        return None
    cleaned = cleaned.strip().rstrip(".").strip()
    match = _PLAIN_NUMBER.fullmatch(cleaned)
    if not match:
        return None
    values = _decimal_readings(match.group(2))
    if match.group(3):
        denominator = int(match.group(3))
        if denominator == 0:
            return None
        values = {value / denominator for value in values}
    if match.group(1):
        values = {-value for value in values}
    return values or None


_GOLD_NUMBER = re.compile(r"(-?)(\d{1,3}(?:,\d{3})+|\d+|(?=\.\d))(\.\d+)?(?:/(\d+))?")


def gold_number(text: str) -> Fraction | None:
    """A gold answer as a number in the data files' English convention ("2,125" is 2125; "-2,1" is a list), or None."""
    match = _GOLD_NUMBER.fullmatch(to_ascii_digits(str(text)).strip().replace("$", ""))
    if not match:
        return None
    value = Fraction((match.group(2).replace(",", "") or "0") + (match.group(3) or ""))
    if match.group(4):
        if int(match.group(4)) == 0:
            return None
        value /= int(match.group(4))
    return -value if match.group(1) else value


# ---------------------------------------------------------------------------------------------------------------------
# Equivalence
# ---------------------------------------------------------------------------------------------------------------------


def normalize_answer_text(text: str) -> str:
    """A forgiving canonical form for answers that are words or labels: `\\text{(C)}` -> `c`, `Evelyn.` -> `evelyn`."""
    text = to_ascii_digits(text)
    text = re.sub(r"\\(?:text|textbf|mathrm|mathbf|mbox|operatorname)\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\\(?:left|right|displaystyle|!|,|;|:|\s)", "", text)
    text = (
        text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("^\\circ", "").replace("^{\\circ}", "")
    )
    text = re.sub(r"[\s$]", "", text).strip(".").lower()
    if re.fullmatch(r"\(?[a-z]\)?", text):  # (c) -> c
        text = text.strip("()")
    return text


def _verify_timeout() -> int | None:
    """math_verify's timeouts use SIGALRM, which only works in the main thread; elsewhere run without them."""
    return 5 if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=4096)
def _parse_latex(answer: str) -> tuple:
    from math_verify import parse

    # first_match: when the whole boxed answer does not parse, do not fall back to some sub-expression inside it
    # (any_match turned "\\frac{1}{3} E_{1}+\\frac{2}{3} E_{2}" into 2/3, which then "equals" any other 2/3).
    boxed = "\\boxed{" + answer + "}"
    return tuple(parse(boxed, extraction_mode="first_match", parsing_timeout=_verify_timeout()))


def symbolic_equal(gold: str, predicted: str) -> bool:
    """math_verify equivalence of two LaTeX answers (gold first: `verify` is not symmetric)."""
    from math_verify import verify

    gold_parsed = _parse_latex(gold)
    predicted_parsed = _parse_latex(predicted)
    if not gold_parsed or not predicted_parsed:
        return False
    try:
        return bool(verify(list(gold_parsed), list(predicted_parsed), timeout_seconds=_verify_timeout()))
    except Exception:  # math_verify raises on exotic sympy objects; an unverifiable answer is not a match
        return False


_BASE_NUMBER = re.compile(r"([0-9A-Za-z]+)_\{?(\d+)\}?")


def _base_number(text: str) -> tuple[str, str] | None:
    """`52_8` / `4210_{5}` (digits in a base) as (digits, base)."""
    match = _BASE_NUMBER.fullmatch(normalize_answer_text(text))
    return (match.group(1), match.group(2)) if match else None


def answers_match(gold: str, predicted: str | None) -> bool:
    """Whether a predicted final answer equals the gold answer (numbers exactly, else symbolically, else as text)."""
    if predicted is None or not predicted.strip():
        return False
    gold = str(gold).strip()
    gold_base = _base_number(gold)
    if gold_base is not None:  # a base-b numeral: the digits must agree, and the base too when one is written
        predicted_base = _base_number(predicted)
        if predicted_base is not None:
            return predicted_base == gold_base
        return normalize_answer_text(predicted) == gold_base[0]
    gold_value = gold_number(gold)
    readings = number_readings(predicted)
    if gold_value is not None and readings is not None:
        return gold_value in readings
    if symbolic_equal(gold, predicted):
        return True
    normalized_gold = normalize_answer_text(gold)
    return bool(normalized_gold) and normalized_gold == normalize_answer_text(predicted)


def score_math(gold: str, response: str) -> MathScore:
    """Extract the final answer from a model response and compare it with the gold answer."""
    predicted, rule = extract_answer(response)
    return MathScore(correct=answers_match(gold, predicted), predicted=predicted, rule=rule)
