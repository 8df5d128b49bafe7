"""Web pipeline steps on real samples and on bad input: readers, URL filter, language ID, heuristics, dedup."""

from __future__ import annotations

import gzip
import json

import duckdb
import pytest
from datatrove.data import Document

from curation.decisions import DecisionsWriter
from curation.web.dedup import AssignKeys, ExactDedupFilter, ExactFindDuplicates, ExactHashSignature, normalised_hash
from curation.web.readers import JsonlDocuments, WarcDocuments, decode_html
from curation.web.steps import HeuristicFilters, LanguageID, OfflineURLFilter
from curation.web.words import RegexWordTokenizer
from nano2.contracts.shards import decisions_dir


def _decisions(artifact):
    """The decisions rows written for `artifact` (beside it, see nano2.contracts.shards.decisions_dir)."""
    assert not artifact.exists() or not list(artifact.rglob("*.parquet")), "decisions must never be inside"
    files = [str(p) for p in decisions_dir(artifact).rglob("*.parquet")]
    if not files:
        return []
    return duckdb.sql(f"SELECT doc_id, step, reason FROM read_parquet({files}) ORDER BY doc_id").fetchall()


@pytest.mark.realdata
def test_warc_reader_on_real_samples(shared_data):
    reader = WarcDocuments(str(shared_data / "web"), glob_pattern="*.warc.gz")
    docs = list(reader.run())
    stats = reader.stats.stats
    # 16 CC responses + 22 wget responses; 2 of the wget ones are not HTML
    assert len(docs) == 38 and stats["dropped_non_html"].total == 2
    assert all(d.metadata["url"].startswith("http") for d in docs)
    assert any("<html" in d.text.lower() for d in docs)


@pytest.mark.realdata
def test_truncated_warc_is_a_counted_drop(shared_data, tmp_path):
    data = (shared_data / "web" / "web_crawl_sample_dolma_0000.warc.gz").read_bytes()
    (tmp_path / "cut.warc.gz").write_bytes(data[: len(data) // 2])
    reader = WarcDocuments(
        str(tmp_path), glob_pattern="*.warc.gz", decisions=DecisionsWriter(str(tmp_path / "o"), "read")
    )
    docs = list(reader.run())
    assert 0 < len(docs) < 22
    assert reader.stats.stats["dropped_truncated_file"].total == 1
    assert [r[2] for r in _decisions(tmp_path / "o")] == ["truncated_file"]


def _warc(path, records):
    """Write a WARC with warcio: records are (url, content_type or None, payload bytes)."""
    from io import BytesIO

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for url, ctype, payload in records:
            headers = [("Content-Type", ctype)] if ctype else []
            http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.0")
            writer.write_record(writer.create_warc_record(url, "response", payload=BytesIO(payload), http_headers=http))


def test_warc_bad_records(tmp_path):
    latin = "<html><body><p>Größe und Maß</p></body></html>".encode("latin-1")
    _warc(
        tmp_path / "a.warc.gz",
        [
            ("http://a.example/ok", "text/html; charset=utf-8", b"<html><body><p>hello</p></body></html>"),
            ("http://a.example/img", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(100)),
            ("http://a.example/empty", "text/html", b"   "),
            ("http://a.example/latin", "text/html; charset=iso-8859-1", latin),
            ("http://a.example/wrong", "text/html; charset=utf-8", latin),  # wrong charset declared
        ],
    )
    out = tmp_path / "out"
    reader = WarcDocuments(str(tmp_path), glob_pattern="*.warc.gz", decisions=DecisionsWriter(str(out), "read"))
    docs = {d.metadata["url"]: d for d in reader.run()}
    assert set(docs) == {"http://a.example/ok", "http://a.example/latin", "http://a.example/wrong"}
    assert "Größe" in docs["http://a.example/latin"].text and "Größe" in docs["http://a.example/wrong"].text
    assert sorted(r[2] for r in _decisions(out)) == ["empty_payload", "non_html"]


def test_decode_html_prefers_declared_charsets():
    body = "<meta charset='windows-1251'><p>Привет</p>".encode("cp1251")
    assert "Привет" in decode_html(body, "text/html").text
    decoded = decode_html("é".encode(), "text/html; charset=utf-8")
    assert (decoded.text, decoded.charset, decoded.repair) == ("é", "utf-8", None)
    assert decode_html(b"<p>plain ascii</p>", "text/html; charset=iso-8859-1").repair is None


def _mojibake_sequences(text: str) -> int:
    """UTF-8 sequences read as Latin-1/windows-1252: 'Ã¤' for 'ä', 'â€™' for '’'."""
    import re

    return len(re.findall("[\u00c2\u00c3][\u0080-\u00bf]|\u00e2\u20ac[\u0080-\u00bf\u2018-\u201e\u2122]", text))


def _utf8_german_gold_page(shared_data) -> dict:
    """A real UTF-8 page of the extraction gold set with many non-ASCII characters (German umlauts)."""
    with gzip.open(shared_data / "web" / "trafilatura_eval_dev.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    pages = [r for r in rows if "html_raw_b64" not in r and r["html"].count("ü") > 20 and len(r["html"]) < 200_000]
    return pages[0]


@pytest.mark.realdata
def test_utf8_page_declared_latin1_is_repaired_and_counted(shared_data, tmp_path):
    """A real UTF-8 page served as ISO-8859-1 (HTTP header and <meta>): read as declared it is mojibake."""
    import re

    page = _utf8_german_gold_page(shared_data)
    html = re.sub(r"(?i)charset\s*=\s*[\"']?utf-8", "charset=iso-8859-1", page["html"])
    payload = html.encode("utf-8")
    assert _mojibake_sequences(payload.decode("cp1252", "replace")) > 20  # what the old decoder kept
    _warc(tmp_path / "a.warc.gz", [(page["url"], "text/html; charset=ISO-8859-1", payload)])
    reader = WarcDocuments(str(tmp_path), glob_pattern="*.warc.gz")
    (doc,) = list(reader.run())
    assert doc.text == html  # exactly the page, umlauts intact
    assert _mojibake_sequences(doc.text) == 0 and doc.text.count("ü") == page["html"].count("ü")
    assert reader.stats.stats["charset_utf8_mislabelled"].total == 1


def test_double_encoded_page_is_repaired():
    """A page whose UTF-8 text was encoded a second time (declared UTF-8, valid UTF-8, full of 'Ã¼')."""
    text = "<html><body><p>Die Größe der Übungsräume für Schüler – „groß“ genügt.</p></body></html>"
    twice = text.encode("utf-8").decode("cp1252").encode("utf-8")
    decoded = decode_html(twice, "text/html; charset=utf-8")
    assert decoded.text == text and decoded.repair == "mojibake"


@pytest.mark.realdata
def test_legacy_charset_pages_still_decode(shared_data):
    """The 14 non-UTF-8 pages of the gold set (their original bytes): every gold snippet found before is found."""
    import base64

    with gzip.open(shared_data / "web" / "trafilatura_eval_dev.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [r for r in map(json.loads, f) if "html_raw_b64" in r]
    assert len(rows) == 14
    for row in rows:
        decoded = decode_html(base64.b64decode(row["html_raw_b64"]))
        assert decoded is not None and "\ufffd" not in decoded.text
        before = [s for s in row.get("with") or [] if s in row["html"]]
        assert all(s in decoded.text for s in before), row["url"]


def test_jsonl_reader_counts_malformed_lines(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"text": "good one", "id": "1", "url": "http://x/1"}) + "\n")
        f.write("{not json\n")
        f.write(json.dumps(["a", "list"]) + "\n")
        f.write(json.dumps({"text": "", "id": "3"}) + "\n")
    reader = JsonlDocuments(
        str(tmp_path), glob_pattern="*.jsonl.gz", decisions=DecisionsWriter(str(tmp_path / "o"), "read")
    )
    docs = list(reader.run())
    assert [d.id for d in docs] == ["1"]
    assert sorted(r[2] for r in _decisions(tmp_path / "o")) == ["empty_text", "malformed_json", "malformed_json"]


def test_readers_of_one_stage_share_the_read_decisions(tmp_path):
    """Two readers chained in one task write one `read` shard: neither truncates the other's drops."""
    (tmp_path / "warc").mkdir()
    _warc(tmp_path / "warc" / "a.warc.gz", [("http://a.example/img", "image/png", b"\x89PNG\r\n" + bytes(50))])
    (tmp_path / "jsonl").mkdir()
    with gzip.open(tmp_path / "jsonl" / "d.jsonl.gz", "wt") as f:
        f.write("{not json\n" + json.dumps({"text": "kept", "id": "1"}) + "\n")
    out = tmp_path / "out"
    shared = DecisionsWriter(out, "read")
    warc = WarcDocuments(str(tmp_path / "warc"), glob_pattern="*.warc.gz", decisions=shared)
    jsonl = JsonlDocuments(str(tmp_path / "jsonl"), glob_pattern="*.jsonl.gz", decisions=shared)
    assert [d.id for d in jsonl.run(warc.run())] == ["1"]
    assert sorted(r[2] for r in _decisions(out)) == ["malformed_json", "non_html"]


@pytest.mark.realdata
def test_url_filter_with_banlists(shared_data):
    f = OfflineURLFilter(
        banned_words_files=[shared_data / "web" / "banlists" / "refinedweb_banned_words_strict_reverse_engineered.txt"]
    )
    assert f.filter(Document("x", "1", metadata={"url": "https://docs.python.org/3/library/json.html"})) is True
    kept, reason = f.filter(Document("x", "2", metadata={"url": "https://pornhub.com/view"}))
    assert not kept and reason in ("domain", "hard_blacklisted")
    assert f.filter(Document("x", "3", metadata={})) is True  # no URL: cannot judge, passed on and counted


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("url", "by_token", "by_substring"),
    [
        ("https://www.example.org/research/institutions/petition-constitucion", True, False),  # "tit"
        ("https://www.example.com.ar/politica/oficialismo-y-oposicion", True, False),  # "cialis"
        ("https://www.example.de/drinks/cocktail-klassiker", True, False),  # "cock"
        ("https://www.example.org/free-porn-videos", False, False),
        ("https://cams.example.net/live/sex-cam/room", False, False),  # two words joined: "sexcam"
        ("https://www.example.org/news/weather-today", True, True),
    ],
)
def test_url_subwords_match_whole_words_by_default(shared_data, url, by_token, by_substring):
    """The DCLM hard list as sub-words: whole URL words by default, anywhere in the URL as datatrove does."""
    from datatrove.pipeline.filters.url_filter import URLFilter

    hard = shared_data / "web" / "banlists" / "refinedweb_banned_words_hard_reverse_engineered.txt"
    doc = Document("x", "1", metadata={"url": url})
    token = OfflineURLFilter(banned_subwords_files=[hard], use_integrated_lists=False)
    substring = OfflineURLFilter(banned_subwords_files=[hard], use_integrated_lists=False, subword_match="substring")
    assert (token.filter(doc) is True) == by_token
    assert (substring.filter(doc) is True) == by_substring
    reference = URLFilter(banned_subwords=hard.read_text().split(), use_integrated_lists=False)
    reference.tldextractor = substring.tldextractor  # offline: the bundled suffix list only
    assert (reference.filter(doc) is True) == by_substring  # substring mode is datatrove's rule exactly


def test_language_id_keeps_the_asked_languages(tmp_path):
    lid = LanguageID(languages=["en", "fr"], decisions=DecisionsWriter(tmp_path / "out", "language"))
    docs = [
        Document("The committee will publish its annual report on the budget next week.", "en1"),
        Document("Le comité publiera son rapport annuel sur le budget la semaine prochaine.", "fr1"),
        Document("Der Ausschuss wird seinen Jahresbericht nächste Woche veröffentlichen.", "de1"),
    ]
    kept = {d.id: d.metadata["language"] for d in lid.run(iter(docs))}
    assert kept == {"en1": "en", "fr1": "fr"}
    assert _decisions(tmp_path / "out") == [("de1", "language", "language_de")]


@pytest.mark.realdata
def test_heuristics_record_filter_and_reason(shared_data, tmp_path):
    step = HeuristicFilters(decisions=DecisionsWriter(tmp_path / "out", "heuristics"))
    lines = (shared_data / "web" / "ccnet_cc_en_head_0091.jsonl").read_text().splitlines()
    docs = [Document(json.loads(line)["text"], f"cc{i}", {"language": "en"}) for i, line in enumerate(lines)]
    docs.append(Document("too short", "short", {"language": "en"}))
    kept = [d.id for d in step.run(iter(docs))]
    assert "cc0" in kept and "short" not in kept and len(kept) >= 5
    reasons = {doc_id: reason for doc_id, _, reason in _decisions(tmp_path / "out")}
    assert set(reasons) == {d.id for d in docs} - set(kept)
    assert all(r.split(":")[0] in ("gopher_repetition", "gopher_quality", "c4", "fineweb") for r in reasons.values())


def test_word_tokenizer_scripts():
    tok = RegexWordTokenizer()
    assert tok.word_tokenize("Don't stop, ok?") == ["Don't", "stop", ",", "ok", "?"]
    assert tok.word_tokenize("日本語です") == ["日", "本", "語", "で", "す"]
    assert tok.sent_tokenize("One. Two? 三。四！") == ["One.", "Two?", "三。", "四！"]


def test_exact_dedup_keeps_the_first_copy(tmp_path):
    texts = ["Alpha  beta", "gamma", "alpha beta", "GAMMA", "delta"]
    docs = [Document(t, f"d{i}") for i, t in enumerate(texts)]
    sig = ExactHashSignature(str(tmp_path / "sigs"))
    keyed = list(sig.run(AssignKeys().run(iter(docs)), rank=0))
    list(ExactFindDuplicates(str(tmp_path / "sigs"), str(tmp_path / "dups")).run(None))
    out = tmp_path / "out"
    kept = [d.id for d in ExactDedupFilter(str(tmp_path / "dups"), DecisionsWriter(out, "exact")).run(iter(keyed))]
    assert kept == ["d0", "d1", "d4"]
    assert [r[0] for r in _decisions(out)] == ["d2", "d3"]
    assert normalised_hash("Alpha  beta") == normalised_hash("alpha beta")


@pytest.mark.realdata
def test_fast_gopher_repetition_matches_datatrove(shared_data):
    from datatrove.pipeline.filters import GopherRepetitionFilter

    from curation.web.fast_filters import FastGopherRepetitionFilter

    docs = []
    for name in ("ccnet_cc_en_head_0091.jsonl", "ccnet_cc_en_head_0174.jsonl"):
        for i, line in enumerate((shared_data / "web" / name).read_text().splitlines()):
            docs.append(Document(json.loads(line)["text"], f"{name}{i}"))
    for doc in list(docs):  # repetitive variants exercise the duplicate-n-gram paths
        docs.append(Document(doc.text[:2000] * 3, doc.id + "x3"))
        docs.append(Document("\n".join(doc.text.splitlines()[:5] * 4), doc.id + "lines"))
    tok = RegexWordTokenizer()
    ours, theirs = FastGopherRepetitionFilter(language=tok), GopherRepetitionFilter(language=tok)
    decisions = [(ours.filter(d), theirs.filter(d)) for d in docs]
    assert all(a == b for a, b in decisions)
    assert sum(a is not True for a, _ in decisions) >= 20  # the comparison covered many drops, not only keeps


def _real_pages(shared_data) -> list[Document]:
    """Real page texts with repetitive and list-like variants, for the equivalence tests of the fast steps."""
    docs = []
    for name in ("ccnet_cc_en_head_0091.jsonl", "ccnet_cc_en_head_0174.jsonl"):
        for i, line in enumerate((shared_data / "web" / name).read_text().splitlines()):
            docs.append(Document(json.loads(line)["text"], f"{name}{i}"))
    for doc in list(docs):
        docs.append(Document(doc.text[:2000] * 3, doc.id + "x3"))
        docs.append(Document("\n".join(doc.text.splitlines()[:5] * 4), doc.id + "lines"))
        docs.append(Document("\n".join(f"- {line[:40]}..." for line in doc.text.splitlines()[:30]), doc.id + "list"))
    docs += [
        Document("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n" * 6, "lorem"),
        Document("We use cookies. See our privacy policy.\nfunction f() { return 1; } is code here.\n" * 4, "curly"),
        Document("# # # ### tags tags\n" * 20 + "Some words [1] with a citation [edit] here.\n" * 5, "hashes"),
        Document("Ünïcödé wörds, «quotes» and — dashes… ok?\n\n\n" * 10, "unicode"),
    ]
    return docs


@pytest.mark.realdata
def test_fast_heuristic_filters_match_datatrove(shared_data):
    """Gopher quality, C4 and FineWeb: the fast versions give datatrove's decision and (C4) rewritten text."""
    from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter

    from curation.web.fast_filters import FastC4QualityFilter, FastFineWebQualityFilter, FastGopherQualityFilter
    from curation.web.words import MemoWordTokenizer

    tok = MemoWordTokenizer()
    pairs = [
        (FastGopherQualityFilter(language=tok), GopherQualityFilter(language=tok)),
        (FastGopherQualityFilter(min_stop_words=None, language=tok),
         GopherQualityFilter(min_stop_words=None, language=tok)),
        (FastC4QualityFilter(filter_no_terminal_punct=False, language=tok),
         C4QualityFilter(filter_no_terminal_punct=False, language=tok)),
        (FastC4QualityFilter(language=tok), C4QualityFilter(language=tok)),
        (FastFineWebQualityFilter(language=tok), FineWebQualityFilter(language=tok)),
    ]  # fmt: skip
    drops = 0
    for ours, theirs in pairs:
        for doc in _real_pages(shared_data):
            a, b = Document(doc.text, doc.id), Document(doc.text, doc.id)
            assert ours.filter(a) == theirs.filter(b), (type(ours).__name__, doc.id)
            assert a.text == b.text
            drops += ours.filter(Document(doc.text, doc.id)) is not True
    assert drops >= 30  # the comparison covered drops of several kinds, not only keeps


@pytest.mark.realdata
def test_fast_minhash_signature_matches_datatrove(shared_data, tmp_path):
    """Same simplified text, same shingles, same signatures as datatrove's MinHash stage 1."""
    from datatrove.pipeline.dedup import MinhashConfig, MinhashDedupSignature
    from datatrove.utils.text import TextNormConfig
    from datatrove.utils.text import simplify_text as datatrove_simplify

    from curation.web.steps import FastMinhashSignature, simplify_text

    texts = [d.text for d in _real_pages(shared_data)]
    texts.append("".join(chr(c) for c in range(0x20, 0x3000) if not 0xD800 <= c < 0xE000))  # marks, spaces, digits
    for config in (TextNormConfig(), TextNormConfig(lowercase=False, norm_weekdays=True, norm_monthnames=True)):
        assert all(simplify_text(t, config) == datatrove_simplify(t, config) for t in texts)
    config = MinhashConfig(n_grams=5, num_buckets=4, hashes_per_bucket=8)
    ours = FastMinhashSignature(str(tmp_path / "a"), config=config, language=RegexWordTokenizer())
    theirs = MinhashDedupSignature(str(tmp_path / "b"), config=config, language=RegexWordTokenizer())
    for text in texts:
        shingles = ours.get_shingles(text)
        assert shingles.shape == theirs.get_shingles(text).shape
        assert (shingles == theirs.get_shingles(text)).all()
        if shingles.size:
            assert ours.get_signature(shingles) == theirs.get_signature(shingles)


def test_shared_tokens_counter_counts_as_datatrove(tmp_path):
    """The same token counts and stats as datatrove's TokensCounter, with one tokenizer per process."""
    from datatrove.pipeline.tokens import TokensCounter

    from curation.tokens import resolve_tokenizer
    from curation.web.steps import SharedTokensCounter

    texts = ["The committee will publish its report.", "", "Ünïcödé and emoji 🙂 " * 50, "x" * 3000]
    path = resolve_tokenizer("default")
    ours, theirs = SharedTokensCounter(path, batch_size=2), TokensCounter(path, batch_size=2)
    a = [d.metadata["token_count"] for d in ours.run(iter(Document(t, str(i)) for i, t in enumerate(texts)))]
    b = [d.metadata["token_count"] for d in theirs.run(iter(Document(t, str(i)) for i, t in enumerate(texts)))]
    assert a == b and a[0] > 0
    assert ours.stats.stats["tokens"].total == theirs.stats.stats["tokens"].total
    ours.warm()
    assert ours.tokenizer is SharedTokensCounter(path).tokenizer  # loaded once, shared by every task
