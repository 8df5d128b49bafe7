"""IFEval scorer: per-instruction checkers on hand-made responses, strict/loose modes, aggregation, loading errors,
and agreement with reference verdicts on real model responses (the oracle files)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from evals.ifeval import (
    IFEvalItem,
    aggregate,
    check_instruction,
    evaluate,
    instruction_ids,
    item_from_record,
    load_items,
    loose_variants,
    score_response,
)
from evals.ifeval.multilingual import japanese_sentences, nominal_ending_count
from evals.ifeval.text import count_sentences, count_words, split_sentences, word_tokens
from nano2.errors import Nano2Error

ORACLE = "evals/ifeval_oracle_Qwen_Qwen2.5-7B-Instruct-GPTQ-Int4_{mode}.jsonl.gz"

# (instruction id, kwargs, a response that follows it, a response that does not) -- strict mode.
CASES: list[tuple[str, dict, str, str]] = [
    # ------------------------------------------------------------------ English (IFEval)
    ("keywords:existence", {"keywords": ["banana", "kiwi"]}, "I like Banana and kiwi.", "I like banana only."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "cat and cat", "one cat"),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"}, "one cat", "cat, cat"),
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "Category theory.", "The Cat sat."),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "at least"}, "Zoo pizza", "zoo"),
    (
        "language:response_language",
        {"language": "de"},
        "Heute ist ein schöner Tag, und ich gehe mit meinem Hund in den großen Park.",
        "Today is a beautiful day, and I am walking my dog in the big park.",
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "less than"},
        "One. Two.",
        "One. Two. Three.",
    ),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"}, "Hi. Dr. Who.", "Dr. Who."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n***\nB", "A\n***\n\n***\nB"),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "one two three four-five", "a b c d"),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "However"},
        'First paragraph.\n\n"However, second."',
        "First paragraph.\n\nSecond paragraph.",
    ),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[name] at [address]", "[name] only"),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\n\np. s. bye", "Hi. PS bye"),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Text\nP.P.S more", "Text\nP.S. more"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n- b", "* a\n* b\n- c"),
    ("detectable_format:constrained_response", {}, "Well. My answer is maybe.", "Yes."),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", "*one* and **"),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "SECTION", "num_sections": 2},
        "SECTION 1\nintro\nSECTION 2\nbody",
        "SECTION 1\nonly one",
    ),
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', "{a: 1}"),
    ("detectable_format:title", {}, "<<My Title>>\nbody", "<< >>\nbody"),
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", "Same.\n******\nSame."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "say hi. Hi!", "Sure! Say hi. Hi!"),
    (
        "startend:end_checker",
        {"end_phrase": "Any other questions?"},
        "Done.\nany other questions?",
        "Any other questions? No.",
    ),
    ("startend:quotation", {}, '"All quoted."', '"Not closed.'),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 3, "capital_relation": "at least"},
        "I DON'T like it",  # Treebank splits DON'T into DO + N'T: three capital words
        "I don't like it",
    ),
    (
        "change_case:english_capital",
        {},
        "THIS ANSWER IS WRITTEN ENTIRELY IN ENGLISH AND IN CAPITAL LETTERS.",
        "This answer is written entirely in English.",
    ),
    (
        "change_case:english_lowercase",
        {},
        "this answer is written entirely in english and in lowercase letters.",
        "This answer has a Capital letter in English.",
    ),
    ("punctuation:no_comma", {}, "No commas here.", "Yes, a comma."),
    # ------------------------------------------------------------------ Spanish (M-IFEval es:)
    ("es:keywords:existence", {"keywords": ["casa"]}, "Mi Casa.", "Mi hogar."),
    ("es:keywords:frequency", {"keyword": "casa", "frequency": 2, "relation": "como máximo"}, "casa casa", "casa " * 3),
    ("es:keywords:forbidden_words", {"forbidden_words": ["perro"]}, "Los perros.", "El perro."),
    ("es:keywords:letter_frequency", {"letter": "a", "let_frequency": 2, "let_relation": "al menos"}, "casa", "oso"),
    (
        "es:language:response_language",
        {"language": "es"},
        "Hoy es un día precioso y voy a pasear con mi perro por el parque grande.",
        "Today is a beautiful day and I am walking my dog in the big park.",
    ),
    ("es:length_constraints:number_words", {"num_words": 3, "relation": "como máximo"}, "uno dos 3,5", "a b c d"),
    (
        "es:length_constraints:number_sentences",
        {"num_sentences": 2, "relation": "al menos"},
        "Título\nUna frase aquí.",  # a line break ends a sentence in the Spanish (spaCy-like) count
        "El Sr. García llegó.",
    ),
    ("es:length_constraints:number_paragraphs", {"num_paragraphs": 1}, "Uno solo.", "A\n***\nB"),
    (
        "es:length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "Hola"},
        "Hola, mundo.\n\nAdiós.",
        "Buenas.\n\nHola.",
    ),
    (
        "es:detectable_content:number_placeholders",
        {"num_placeholders": 1, "relation": "al menos"},
        "[nombre]",
        "nombre",
    ),
    ("es:detectable_content:postscript", {"postscript_marker": "P.D."}, "Hola.\nP.D. Adiós", "Hola. PD adiós"),
    ("es:detectable_content:postscript", {"postscript_marker": "Nota"}, "Hola.\nNota: adiós", "Hola."),
    ("es:detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n* b\n- c", "- a\n- b"),
    ("es:detectable_format:constrained_response", {}, "Sí.", "Si"),
    (
        "es:detectable_format:number_highlighted_sections",
        {"num_highlights": 1, "relation": "al menos"},
        "*resaltado*",
        "nada",
    ),
    (
        "es:detectable_format:multiple_sections",
        {"section_spliter": "SECCIÓN", "num_sections": 2, "relation": "al menos"},
        "SECCIÓN 1 a\nSECCIÓN 2 b",
        "SECCIÓN 1 a",
    ),
    ("es:detectable_format:json_format", {}, '{"a": 1}', "a: 1"),
    ("es:detectable_format:title", {}, "<<Título>>", "Título"),
    ("es:combination:two_responses", {}, "A\n******\nB", "A\n******\n******\nB"),
    ("es:combination:repeat_prompt", {"prompt_to_repeat": "Di hola."}, "Di hola. ¡Hola!", "¡Hola!"),
    ("es:punctuation:no_comma", {}, "Sin comas.", "Con, coma."),
    ("es:punctuation:question_marks", {}, "¿Qué tal?", "Qué tal?"),
    ("es:punctuation:exclamation_marks", {}, "¡Hola!", "Hola!"),
    ("es:startend:end_checker", {"end_phrase": "¿Necesitas algo más?"}, "Listo. ¿Necesitas algo más?", "Listo."),
    ("es:startend:quotation", {}, '"Hola"', "«Hola»"),
    (
        "es:change_case:capital_word_frequency",
        {"capital_frequency": 1, "capital_relation": "como máximo"},
        "Viva ESPAÑA",
        "VIVA ESPAÑA",
    ),
    (
        "es:change_case:spanish_capital",
        {},
        "ESTA RESPUESTA ESTÁ ESCRITA COMPLETAMENTE EN ESPAÑOL Y EN LETRAS MAYÚSCULAS.",
        "Esta respuesta está escrita en español.",
    ),
    (
        "es:change_case:spanish_lowercase",
        {},
        "esta respuesta está escrita completamente en español y en letras minúsculas.",
        "Esta respuesta está escrita en español con Mayúsculas.",
    ),
    ("es:special_character:enie", {"let_frequency": 2}, "El niño y la niña.", "El niño."),
    ("es:special_character:dieresis", {"let_frequency": 1}, "La cigüeña vuela.", "La cigueña vuela."),
    ("es:special_character:tildes", {"num_words": 2, "relation": "al menos"}, "El camión y el avión.", "El camión."),
    # ------------------------------------------------------------------ French (M-IFEval fr:)
    ("fr:keywords:existence", {"keywords": ["chat"]}, "Le Chat dort.", "Le chien dort."),
    ("fr:keywords:frequency", {"keyword": "chat", "frequency": 2, "relation": "moins de"}, "un chat", "chat chat"),
    ("fr:keywords:forbidden_words", {"forbidden_words": ["chien"]}, "Le chat.", "Le chien."),
    ("fr:keywords:letter_frequency", {"letter": "y", "let_frequency": 2, "let_relation": "au moins"}, "yoyo", "oui"),
    (
        "fr:language:response_language",
        {"language": "fr"},
        "Aujourd'hui il fait très beau et je me promène avec mon chien dans le grand parc.",
        "Today is a beautiful day and I am walking my dog in the big park.",
    ),
    (
        "fr:length_constraints:number_sentences",
        {"num_sentences": 2, "relation": "moins de"},
        "M. Dupont est arrivé.",  # "M." is an abbreviation: one sentence
        "Il pleut. Il fait froid.",
    ),
    ("fr:length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n***\nB", "A"),
    ("fr:length_constraints:number_words", {"num_words": 3, "relation": "au moins"}, "l'école est là", "bonjour"),
    (
        "fr:length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Inversement"},
        "Un.\n\ninversement, deux.",
        "Un.\n\nDeux.",
    ),
    ("fr:detectable_content:number_placeholders", {"num_placeholders": 1}, "[nom]", "nom"),
    ("fr:detectable_content:postscript", {"postscript_marker": "P.-S."}, "Merci.\nP.-S. À bientôt", "Merci."),
    ("fr:detectable_content:informal_address", {}, "Je te remercie.", "Je vous remercie."),
    ("fr:detectable_content:no_digits", {}, "deux chats", "2 chats"),
    ("fr:detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n- b", "* a"),
    ("fr:detectable_format:constrained_response", {}, "Peut-être.", "oui"),
    ("fr:detectable_format:number_highlighted_sections", {"num_highlights": 1}, "*important*", "important"),
    (
        "fr:detectable_format:multiple_sections",
        {"section_spliter": "Partie", "num_sections": 2},
        "Partie 1 a Partie 2 b",
        "Partie 1 a",
    ),
    ("fr:detectable_format:json_format", {}, "[1, 2]", "[1, 2"),
    ("fr:detectable_format:title", {}, "<<Titre>>", "##Titre##"),
    ("fr:combination:two_responses", {}, "Un\n******\nDeux", "Un"),
    ("fr:combination:repeat_prompt", {"prompt_to_repeat": "Dis bonjour."}, "Dis bonjour. Bonjour !", "Bonjour !"),
    ("fr:startend:end_checker", {"end_phrase": "D'autres questions ?"}, "Voilà. D'autres questions ?", "Voilà."),
    ("fr:startend:quotation", {}, "«Bonjour»", "«Bonjour"),
    ("fr:punctuation:no_comma", {}, "Pas de virgule.", "Oui, une virgule."),
    (
        "fr:change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "au moins"},
        "VIVE LA France",
        "Vive la France",
    ),
    (
        "fr:change_case:french_capital",
        {},
        "CETTE RÉPONSE EST ENTIÈREMENT ÉCRITE EN FRANÇAIS ET EN LETTRES MAJUSCULES.",
        "Cette réponse est écrite en français.",
    ),
    (
        "fr:change_case:french_lowercase",
        {},
        "cette réponse est entièrement écrite en français et en lettres minuscules.",
        "Cette réponse est écrite en français avec des Majuscules.",
    ),
    ("fr:special_character:ethel_or_cedilla", {"forbidden_char": "ç"}, "Bonjour", "Ça va"),
    ("fr:special_character:no_accents", {}, "Je suis ne a Paris", "Je suis né à Paris"),
    (
        "fr:special_character:accents",
        {"word_to_accentuate": {"ecole": "école", "a": "à"}},
        "Je vais à l'école.",
        "Je vais a l'école.",
    ),
    # ------------------------------------------------------------------ Japanese (M-IFEval ja:)
    ("ja:keywords:existence", {"keywords": ["秘密の特訓"]}, "秘密の特訓をした。", "秘密をした。"),
    ("ja:keywords:frequency", {"keyword": "音", "frequency": 2, "relation": "未満"}, "音がする。", "音と音。"),
    ("ja:keywords:forbidden_words", {"forbidden_words": ["猫"]}, "犬がいる。", "猫がいる。"),
    ("ja:keywords:letter_frequency", {"letter": "し", "let_frequency": 2, "let_relation": "以上"}, "しシ", "し"),
    (
        "ja:language:response_language",
        {"language": "ja"},
        "今日はとても良い天気なので、公園を散歩しました。",
        "Today is a beautiful day and I am walking my dog in the big park.",
    ),
    (
        "ja:length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "以上"},
        "一。二！三？",
        "一。「二。三。」",
    ),
    ("ja:length_constraints:number_paragraphs", {"num_paragraphs": 2}, "一\n***\n二", "一"),
    ("ja:length_constraints:number_letters", {"num_letters": 5, "relation": "未満"}, "あいう", "あいうえお"),
    (
        "ja:length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "首"},
        "一段落。\n\n「首都は東京。」",
        "一段落。\n\n東京。",
    ),
    ("ja:detectable_content:number_placeholders", {"num_placeholders": 1}, "[名前]", "名前"),
    ("ja:detectable_content:postscript", {"postscript_marker": "追伸"}, "本文\n追伸：またね", "本文"),
    ("ja:detectable_format:number_bullet_lists", {"num_bullets": 2}, "・りんご\n・みかん", "* りんご\n* みかん"),
    ("ja:detectable_format:number_numbered_lists", {"num_items": 2}, "1. りんご\n2. みかん", "1. りんご"),
    ("ja:detectable_format:constrained_response", {}, "はい、そうです。", "はい。"),
    ("ja:detectable_format:number_highlighted_sections", {"num_highlights": 1}, "《重要》です", "《》です"),
    (
        "ja:detectable_format:multiple_sections",
        {"section_spliter": "章", "num_sections": 2},
        "第1章 はじめに\n第２章 おわりに",
        "第1章 はじめに",
    ),
    ("ja:detectable_format:json_format", {}, '```\n{"a": "あ"}\n```', "あ"),
    ("ja:detectable_format:title", {}, "『喜びの詩』", "「喜びの詩」"),
    ("ja:detectable_format:nominal_ending", {"count": 2}, "美しい景色。静かな夜。", "景色が美しい。夜は静かです。"),
    ("ja:combination:two_responses", {}, "一\n******\n二", "一\n******\n一"),
    (
        "ja:combination:repeat_prompt",
        {"prompt_to_repeat": "Hello を訳して。"},
        "Hello を訳して。こんにちは",
        "hello を訳して。",
    ),
    ("ja:startend:end_checker", {"end_phrase": "以上です。"}, "説明は以上です。」", "以上です。ありがとう。"),
    ("ja:startend:quotation", {}, "「こんにちは」", "こんにちは"),
    ("ja:startend:sentence_unified_end", {"ending": "です"}, "ペンです。「本だ。」本です。", "ペンです。本だ。"),
    ("ja:letters:furigana", {}, "漢字（かんじ）をよむ", "漢字をよむ"),
    ("ja:letters:hiragana_only", {}, "これは ひらがな です。", "これは漢字です。"),
    ("ja:letters:katakana_only", {}, "コレハ・カタカナ。", "コレハかたかな"),
    ("ja:letters:no_hiragana", {}, "カタカナ漢字", "ひらがな"),
    ("ja:letters:no_katakana", {}, "ひらがな漢字", "カタカナ"),
    ("ja:letters:kanji", {"kanji_limit": 3, "relation": "未満"}, "日本へ", "日本語学"),
    ("ja:letters:kansuuji", {}, "三つのりんご", "3つのりんご"),
    ("ja:punctuation:no_comma", {}, "はい。", "はい、そう。"),
    ("ja:punctuation:no_period", {}, "はい", "はい。"),
]


@pytest.mark.parametrize(("instruction_id", "kwargs", "good", "bad"), CASES, ids=[case[0] for case in CASES])
def test_checker_on_hand_made_responses(instruction_id, kwargs, good, bad):
    assert check_instruction(instruction_id, kwargs, "", good) is True
    assert check_instruction(instruction_id, kwargs, "", bad) is False


def test_every_registered_instruction_has_hand_made_cases():
    assert sorted({case[0] for case in CASES}) == instruction_ids()


def test_blank_or_missing_response_follows_nothing():
    for response in ("", "   \n", None):
        assert not check_instruction("punctuation:no_comma", {}, "", response)
        assert not check_instruction("punctuation:no_comma", {}, "", response, loose=True)


def test_loose_mode_variants():
    assert loose_variants("Sure:\n**body**\nBye") == [
        "Sure:\n**body**\nBye",
        "**body**\nBye",
        "Sure:\n**body**",
        "**body**",
        "Sure:\nbody\nBye",
        "body\nBye",
        "Sure:\nbody",
        "body",
    ]
    # A chatty first line breaks "all lowercase" strictly; loose mode drops it.
    response = "Sure! Here it is:\nthis answer is written entirely in english and in lowercase letters."
    assert not check_instruction("change_case:english_lowercase", {}, "", response)
    assert check_instruction("change_case:english_lowercase", {}, "", response, loose=True)
    # A markdown-bold title still counts as the first word once `*` are removed.
    bold = "**Summer** is here.\n\nAnd it is hot."
    kwargs = {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "summer"}
    assert not check_instruction("length_constraints:nth_paragraph_first_word", kwargs, "", bold)
    assert check_instruction("length_constraints:nth_paragraph_first_word", kwargs, "", bold, loose=True)
    # Loose mode never rescues a response that fails in every variant.
    assert not check_instruction("punctuation:no_comma", {}, "", "a, b\nc, d\ne, f", loose=True)


def test_english_sentence_and_word_counting_follow_punkt():
    # Punkt never splits at a bare line break, only after . ? ! followed by white space.
    assert count_sentences("* first item\n* second item\n* third item") == 1
    # Learned English abbreviations (Dr, Mr, U.S, ...) do not end a sentence; e.g. and etc. are not in the table.
    assert count_sentences("Dr. Smith met Mr. Jones in the U.S. yesterday.") == 1
    assert count_sentences("Bring fruit, e.g. apples. Then leave.") == 3
    # An initial before a capitalised name is not a sentence end; a number before a lower-case word is not either.
    assert count_sentences("J. K. Rowling wrote it. Page 3. was cut.") == 2
    assert split_sentences('He said "Stop." Then he left.') == ['He said "Stop."', "Then he left."]
    assert count_sentences("") == 0
    assert count_words("It's a well-known fact: 3.5 cats.") == 9
    assert word_tokens("I DON'T know (AI).") == ["I", "DO", "N'T", "know", "(", "AI", ")", "."]


def test_japanese_sentence_segmenter():
    # Cut after 。!? (full or half width), not inside 「」 or (), at line breaks; a line ending in の joins the next.
    assert japanese_sentences("こんにちは。元気？「はい。そう。」と言った。") == [
        "こんにちは。",
        "元気?",
        "「はい。そう。」と言った。",
    ]
    assert japanese_sentences("猫の\n名前は(タマ。)です。\n\nおわり") == ["猫の名前は(タマ。)です。", "おわり"]
    assert nominal_ending_count("静かな夜。彼は「美しい景色。」と言った。走る。") == 1


def test_unknown_instruction_and_bad_kwargs_fail_at_load_time(tmp_path: Path):
    good = {"key": 1, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    assert item_from_record(good).instruction_id_list == ("punctuation:no_comma",)
    with pytest.raises(Nano2Error, match="unknown IFEval instruction id 'punctuation:no_commas'"):
        item_from_record({**good, "instruction_id_list": ["punctuation:no_commas"]})
    with pytest.raises(Nano2Error, match="relation"):
        item_from_record(
            {
                **good,
                "instruction_id_list": ["length_constraints:number_words"],
                "kwargs": [{"num_words": 5, "relation": "at most"}],
            }
        )
    with pytest.raises(Nano2Error, match="'al menos' or 'como máximo'"):  # relation words are per language
        check_instruction("es:length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "", "x")
    with pytest.raises(Nano2Error, match="keywords"):
        item_from_record({**good, "instruction_id_list": ["keywords:existence"], "kwargs": [{}]})
    with pytest.raises(Nano2Error, match="1 instruction ids but 2 kwargs"):
        item_from_record({**good, "kwargs": [{}, {}]})
    path = tmp_path / "input.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "key": 2, "instruction_id_list": ["nope:x"]}) + "\n")
    items = load_items(path)
    assert next(items).key == 1
    with pytest.raises(Nano2Error, match=r"input\.jsonl:2 \(key 2\): unknown IFEval instruction id 'nope:x'"):
        next(items)
    with pytest.raises(Nano2Error, match="not found"):
        next(load_items(tmp_path / "missing.jsonl"))


def test_score_response_and_four_accuracies():
    items = [
        IFEvalItem(1, "p1", ("punctuation:no_comma", "startend:quotation"), ({}, {})),
        IFEvalItem(2, "p2", ("punctuation:no_comma", "punctuation:no_comma"), ({}, {})),
        IFEvalItem(3, "p3", ("detectable_format:title",), ({},)),
    ]
    responses = {1: 'Intro line\n"no commas"', 2: "no commas", 3: "untitled, sorry"}
    strict = score_response(items[0], responses[1])
    assert strict["follow_list"] == [True, False] and not strict["follow_all"]
    assert [entry["instruction_id"] for entry in strict["per_instruction"]] == list(items[0].instruction_id_list)
    assert score_response(items[0], responses[1], loose=True)["follow_all"]
    result = evaluate(items, responses)
    # strict: prompts 2 of 3 fail/pass -> [F, T, F]; instructions [T, F, T, T, F] -> 3/5
    # loose: the quote is found without the first line -> [T, T, F]; instructions 4/5
    assert (result.prompt_strict, result.instruction_strict) == (pytest.approx(1 / 3), pytest.approx(3 / 5))
    assert (result.prompt_loose, result.instruction_loose) == (pytest.approx(2 / 3), pytest.approx(4 / 5))
    assert result.by_instruction["punctuation:no_comma"] == {"n": 3, "strict": 1.0, "loose": 1.0}
    assert result.prompts == 3 and result.instructions == 5
    with pytest.raises(Nano2Error):
        aggregate([], [])


# ------------------------------------------------------------------------------------------------- real data


# Every remaining disagreement with the M-IFEval oracle, investigated: (mode, key, instruction id) -> reason.
KNOWN_ORACLE_DISAGREEMENTS = {
    ("strict", 1122, "keywords:letter_frequency"): "letter '#': the reference replaces non a-z letters by a random one",
    ("strict", 1129, "keywords:letter_frequency"): "letter '!': the reference replaces non a-z letters by a random one",
    ("strict", 3456, "change_case:english_capital"): "langdetect is 50/50 en/de on this list of names (unseeded ref)",
    ("loose", 3617, "change_case:english_capital"): "langdetect gives en for one loose variant with seed 0",
}


def _oracle_rows(shared_data: Path, mode: str) -> list[dict]:
    with gzip.open(shared_data / ORACLE.format(mode=mode), "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


@pytest.mark.realdata
@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_oracle_agreement(shared_data: Path, mode: str):
    """Our verdicts vs M-IFEval's checker on 541 real Qwen2.5-7B responses: >= 98% of instructions agree."""
    items = {item.prompt: item for item in load_items(shared_data / "evals/ifeval_input_data.jsonl")}
    rows = _oracle_rows(shared_data, mode)
    assert len(rows) == len(items) == 541
    agree, total, disagreements = 0, 0, {}
    for row in rows:
        item = items[row["prompt"]]
        assert list(item.instruction_id_list) == row["instruction_id_list"]
        ours = score_response(item, row["response"], loose=mode == "loose")
        for instruction_id, our_verdict, reference in zip(
            item.instruction_id_list, ours["follow_list"], row["follow_instruction_list"], strict=True
        ):
            total += 1
            if our_verdict == reference:
                agree += 1
            else:
                disagreements[(mode, item.key, instruction_id)] = (our_verdict, reference, row["response"][:120])
    for (_, key, instruction_id), (our_verdict, reference, excerpt) in sorted(disagreements.items()):
        print(f"{mode} key={key} {instruction_id}: ours={our_verdict} reference={reference} response={excerpt!r}")
    print(f"{mode}: {agree}/{total} instructions agree ({agree / total:.2%})")
    assert agree / total >= 0.98
    unexplained = set(disagreements) - set(KNOWN_ORACLE_DISAGREEMENTS)
    assert not unexplained, f"new disagreements to investigate: {sorted(unexplained)}"


@pytest.mark.realdata
def test_oracle_prompt_level_accuracy_matches_reference(shared_data: Path):
    """The headline numbers (prompt/instruction level, strict/loose) land within a point of the reference run's."""
    items = {item.prompt: item for item in load_items(shared_data / "evals/ifeval_input_data.jsonl")}
    strict_rows, loose_rows = _oracle_rows(shared_data, "strict"), _oracle_rows(shared_data, "loose")
    responses = {items[row["prompt"]].key: row["response"] for row in strict_rows}
    ours = evaluate(items.values(), responses)

    def reference_levels(rows):
        verdicts = [v for row in rows for v in row["follow_instruction_list"]]
        return sum(row["follow_all_instructions"] for row in rows) / len(rows), sum(verdicts) / len(verdicts)

    assert (ours.prompt_strict, ours.instruction_strict) == pytest.approx(reference_levels(strict_rows), abs=0.01)
    assert (ours.prompt_loose, ours.instruction_loose) == pytest.approx(reference_levels(loose_rows), abs=0.01)


@pytest.mark.realdata
@pytest.mark.parametrize("language", ["es", "fr", "ja"])
def test_m_ifeval_inputs_load_with_every_instruction_registered(shared_data: Path, language: str):
    items = list(load_items(shared_data / f"multilingual/m_ifeval_{language}_input_data.jsonl"))
    assert len(items) == {"es": 115, "fr": 235, "ja": 172}[language]
    used = {instruction_id for item in items for instruction_id in item.instruction_id_list}
    assert used <= set(instruction_ids())
    # Every item scores without error on a plain response in both modes.
    for item in items:
        for loose in (False, True):
            assert len(score_response(item, "Une réponse. 一つの答え。", loose=loose)["follow_list"]) == len(
                item.instruction_id_list
            )
