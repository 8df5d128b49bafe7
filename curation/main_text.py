"""Fast main-text extraction for the Common Crawl pipeline: resiliparse does the parsing, we remove the boilerplate.

Trafilatura was two thirds of the FineWeb-style run time. Here the expensive work stays in compiled code
(resiliparse's Lexbor DOM, its CSS matching and its main-content text dump) and Python only looks at a few hundred
blocks per page:

1. furniture elements (footers, newsletter/subscribe boxes, pop-ups, pagination, copyright, ads) are skipped by a
   short CSS list inside resiliparse's main-content dump;
2. if the page declares its article element (schema.org `articleBody`, or `entry-content`/`article-body`-style
   class names), it is bracketed by two sentinel paragraphs, so each block knows whether it came from inside it;
3. the `minimal_html` dump is split into blocks (paragraph, heading, list item, div line, preformatted text), each
   with the share of its characters inside links;
4. blocks are classified in the spirit of jusText: long, link-poor blocks anchor the text; short blocks are
   dropped when they are link lists, dates, credits or stock phrases ("Share", "Related articles", "Anzeige",
   "(c) ..."); before the first and after the last anchor only headings and prose survive; outside a declared
   container only the title and lede before it; a "related"/"comments" heading after the text ends the article;
5. when resiliparse's main-content heuristic leaves almost nothing (it drops some list- or table-shaped pages
   whole; some pages live in <noscript>), the whole page is dumped again, minus navigation chrome, and classified
   the same way.

The math-preserving variant is `curation.web.math_extract`, the datatrove step `curation.web.steps.FastExtractor`,
the learned block classifier `curation.web.block_classifier`, and the gold-set scorer that measures all of them
`curation.web.evaluate`. This module sits below both `curation.web` and `curation.quality` (whose training reads the
article text and the furniture of real pages through it), so neither package imports the other for it.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import ElementNode, HTMLTree

from nano2.errors import Nano2Error

FAVOURS = ("precision", "balanced", "recall")

# Elements skipped inside resiliparse's dump (CSS matched in Lexbor, ~25 us per selector and page). Only names that
# mean furniture wherever they occur: `author`, `bio`, `date`, `meta`, `tag` also name article wrappers (WordPress
# puts `tag-*` and `category-*` classes on the article element itself).
BOILERPLATE_SELECTORS = ",".join(
    [
        "footer",
        "[role=contentinfo]",
        "[class*=footer i]",
        "[id*=footer i]",
        "[class*=newsletter i]",
        "[id*=newsletter i]",
        "[id*=subscri i]",
        "[id*=signup i]",
        "[class*=popup i]",
        "[id*=popup i]",
        "[class*=modal i]",
        "[class*=pagination i]",
        "[class*=copyright i]",
        "[class*=advert i]",
    ]
)
# Skipped when the whole page is dumped because resiliparse's main-content heuristic left too little.
PAGE_CHROME_SELECTORS = "nav,header,aside,[role=navigation],[role=banner],[role=complementary]"
# `favour="precision"` also skips these: usually furniture, but sometimes the name of an article wrapper.
RISKY_BOILERPLATE_SELECTORS = ",".join(
    [
        "figcaption",
        "[class*=author i]",
        "[class*=byline i]",
        "[class*=share i]",
        "[class*=social i]",
        "[class*=related i]",
        "[class*=comment i]",
        "[class*=teaser i]",
        "[class*=caption i]",
    ]
)


@dataclass(frozen=True, slots=True)
class ExtractionSettings:
    """Thresholds for one `favour`. `balanced` is what the benchmark and the gold-set test floors measure."""

    anchor_min_chars: int = 100  # a block this long and link-poor anchors the text
    anchor_max_link_density: float = 0.35
    link_list_density: float = 0.5  # a short block with this share of link text is navigation
    link_list_max_chars: int = 200
    phrase_max_chars: int = 160  # stock-phrase, date and credit rules only judge blocks this short
    skip_selectors: tuple[str, ...] = (BOILERPLATE_SELECTORS,)
    use_container: bool = True  # trust a declared article container (articleBody, entry-content ...)
    container_min_share: float = 0.2  # ... if it holds at least this share of the visible text
    trim_to_text: bool = True  # before the first / after the last anchor only headings and prose survive
    whole_page_below_chars: int = 200  # less main content than this: try the whole page too
    classify_blocks: bool = True


SETTINGS = {
    "precision": ExtractionSettings(
        anchor_min_chars=120,
        link_list_density=0.35,
        skip_selectors=(BOILERPLATE_SELECTORS, RISKY_BOILERPLATE_SELECTORS),
    ),
    "balanced": ExtractionSettings(),
    "recall": ExtractionSettings(use_container=False, trim_to_text=False),
}


def settings_for(favour: str) -> ExtractionSettings:
    if favour not in SETTINGS:
        raise Nano2Error(f"favour must be one of {', '.join(FAVOURS)}, got {favour!r}")
    return SETTINGS[favour]


# ---------------------------------------------------------------------------------------------------------------
# 1. the article container
# ---------------------------------------------------------------------------------------------------------------

_INVISIBLE = "script,style,noscript,template"
# Where pages say which element holds the article: schema.org's articleBody, then the class names CMSs give it.
CONTENT_CONTAINER_SELECTORS = (
    "[itemprop=articleBody]",
    ",".join(
        f"[class*={name} i]"
        for name in (
            "entry-content", "post-content", "article-content", "articlebody", "article-body", "article__body",
            "post-body", "story-body", "article-text",
        )
    ),
)  # fmt: skip
_CONTAINER_START, _CONTAINER_END = "n2x7contentstart", "n2x7contentend"


def visible_text_length(tree: HTMLTree) -> int:
    """Characters of body text outside scripts and styles (the denominator of `container_min_share`)."""
    body = tree.body
    if body is None:
        return 0
    invisible = sum(len(el.text or "") for el in body.query_selector_all(_INVISIBLE).values())
    return max(0, len(body.text or "") - invisible)


def find_content_container(tree: HTMLTree, min_share: float) -> ElementNode | None:
    """The element the page declares as its article body, if it holds at least `min_share` of the visible text
    (the largest match of the first selector group that matches)."""
    body = tree.body
    if body is None:
        return None
    total = None
    for selector in CONTENT_CONTAINER_SELECTORS:
        matches = body.query_selector_all(selector).values()
        if not matches:
            continue
        best = max(matches, key=lambda el: len(el.text or ""))
        if total is None:
            total = visible_text_length(tree)
        if len(best.text or "") >= max(200, min_share * total):
            return best
    return None


def mark_content_container(tree: HTMLTree, min_share: float) -> bool:
    """Bracket the article container with two sentinel paragraphs that survive into the text dump, so blocks can
    be told apart by whether they came from inside it."""
    container = find_content_container(tree, min_share)
    if container is None:
        return False
    start, end = tree.create_element("p"), tree.create_element("p")
    start.text, end.text = _CONTAINER_START, _CONTAINER_END
    container.prepend(start)
    container.append(end)
    return True


def _split_by_container(blocks: list[Block]) -> list[Block]:
    """Drop the sentinels and flag each block by whether it lay between them. If the dump lost the start sentinel
    (resiliparse judged the container itself to be boilerplate), every block counts as inside."""
    if not any(block.text == _CONTAINER_START for block in blocks):
        return [block for block in blocks if block.text != _CONTAINER_END]
    inside = False
    kept: list[Block] = []
    for block in blocks:
        if block.text == _CONTAINER_START:
            inside = True
        elif block.text == _CONTAINER_END:
            inside = False
        else:
            block.in_container = inside
            kept.append(block)
    return kept


# ---------------------------------------------------------------------------------------------------------------
# 2. blocks
# ---------------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Block:
    """One paragraph, heading, list item, preformatted section or div line of the main-content dump."""

    kind: str  # "h", "p", "li", "pre" or "div"
    text: str
    link_chars: int
    keep: bool = True
    is_math: bool = False
    in_container: bool = True
    reason: str = ""  # why the block was dropped (diagnostics)
    whole_page: bool = False  # from the whole-page dump (main content left too little), not the main-content one

    @property
    def link_density(self) -> float:
        return self.link_chars / max(1, len(self.text))


_TAG = re.compile(r"<[^>]*>")
_LINK = re.compile(r"<a\b[^>]*>(.*?)</a>", re.DOTALL)
# the first three characters of a dump line -> block kind (anything else is a div line)
_BLOCK_KINDS = {"<p>": "p", "<li": "li", "<pr": "pre", **{f"<h{level}": "h" for level in range(1, 7)}}


def _plain(fragment: str) -> str:
    if "<" in fragment:
        fragment = _TAG.sub("", fragment)
    if "&" in fragment:
        fragment = html_lib.unescape(fragment)
    return fragment


def parse_minimal_html(markup: str) -> list[Block]:
    """Blocks from resiliparse's `minimal_html` dump (one element per line; <p> and <pre> may span lines)."""
    blocks: list[Block] = []
    open_kind: str | None = None
    pending: list[str] = []
    for raw_line in markup.split("\n"):
        line = raw_line.strip()
        if open_kind is None:
            if not line:
                continue
            kind = _BLOCK_KINDS.get(line[:3], "div")
            closing = "</pre>" if kind == "pre" else "</p>"
            if kind in ("p", "pre") and closing not in line:
                open_kind, pending = kind, [raw_line if kind == "pre" else line]
                continue
            pending = [raw_line if kind == "pre" else line]
        else:
            kind = open_kind
            pending.append(raw_line if kind == "pre" else line)
            if ("</pre>" if kind == "pre" else "</p>") not in line:
                continue
            open_kind = None
        fragment = "\n".join(pending)
        links = sum(len(_plain(m)) for m in _LINK.findall(fragment)) if "<a " in fragment else 0
        text = _plain(fragment)
        text = text.strip("\n") if kind == "pre" else text.strip()
        if text:
            blocks.append(Block(kind, text, links))
    if open_kind is not None and pending:
        text = _plain("\n".join(pending)).strip()
        if text:
            blocks.append(Block(open_kind, text, 0))
    return blocks


# ---------------------------------------------------------------------------------------------------------------
# 3. classification
# ---------------------------------------------------------------------------------------------------------------

# Stock phrases that open page furniture (de, en, fr, es, it, pl, pt, nl), matched at the start of short blocks.
_FURNITURE = re.compile(
    r"""^[\W\d_]*(?:
        (?:diese\s+seite\s+|seite\s+|artikel\s+|beitrag\s+)?teilen\b|share\b|sharing\b|be\s+sociable|partager
      | compartir|compartilhe|compartilhar|partilhar|condividi|udost[eę]pnij|delen\b|tweet\b|pin\s+it|drucken\b
      | print\b|e-?mail\b|follow\s+us|folge\s+uns|folgen\s+sie\s+uns|síguenos|suivez-nous|seguici
      | related\b|ähnliche\s+(?:beiträge|artikel|themen|news)|verwandte\s|mehr\s+(?:zum|zu|aus|von|über)\b
      | weitere\s+(?:beiträge|artikel|informationen|themen|nachrichten|news|meldungen|infos|tipps|links|videos)
      | weiterführende|das\s+könnte\s+(?:dich|sie)|auch\s+interessant|lesen\s+sie\s+(?:auch|hier|mehr)
      | auch\s+lesen|weiterlesen|mehr\s+lesen|zum\s+artikel|zum\s+thema\b|empfohlen|empfehlungen|recommended
      | you\s+(?:may|might)\s+also|read\s+(?:more|also|next)|continue\s+reading|see\s+also|more\s+(?:from|on|stories)
      | popular\s+(?:posts|stories|articles)|recent\s+posts|most\s+(?:read|popular)|trending\b|load\s+more|show\s+more
      | top[-\s]themen|neueste\s+artikel|meistgelesen|die\s+meistgelesenen|beliebte\s|entdecken?\b|entdecke\s+weitere
      | zobacz\s+(?:również|też)|czytaj\s+(?:też|także|więcej)|polecamy|najczęściej\s+czytane
      | temas\s+relacionados|noticias\s+relacionadas|(?:le|te)\s+puede\s+interesar|lee\s+también|leer\s+más
      | lo\s+más\s+leído|más\s+noticias|à\s+lire\s+aussi|lire\s+aussi|lire\s+la\s+suite|voir\s+aussi
      | sur\s+le\s+même\s+sujet|articles?\s+similaires|leggi\s+anche|leggi\s+di\s+più|articoli\s+correlati
      | leia\s+(?:também|mais)|veja\s+também|lees\s+(?:ook|meer)|gerelateerde
      | zurück\s+zu|back\s+to|zur\s+(?:startseite|übersicht)|nach\s+oben|skip\s+to|inhaltsverzeichnis
      | table\s+of\s+contents|previous\s+(?:post|article)|next\s+(?:post|article)|vorheriger\s|nächster\s
      | (?:keine\s+)?kommentare?\b|comments?\b|kommentar\s+schreiben|kommentieren|leave\s+a\s+(?:reply|comment)
      | post\s+a\s+comment|hinterlasse|schreibe\s+einen\s+kommentar|antworten\b|reply\b|commentaires?\b
      | comentarios?\b|comentários?\b|commenti\b|komentarze?\b|reacties\b
      | sign\s+in|log\s*in\b|anmelden\b|registrier|du\s+musst|connexion\b|iniciar\s+sesión
      | newsletter|abonnier|subscribe|sign\s+up|jetzt\s+(?:abonnieren|anmelden|bestellen|kostenlos)|hazte\s+miembro
      | suscríbete|abonnez-vous|s'abonner|iscriviti|assine\b
      | tags?\s*:|schlagw(?:orte|örter)|themen\s*:|thema\s*:|kategorie|categor(?:y|ies)\s*:|filed\s+under
      | posted\s+in|argomenti\b|étiquettes|etiquetas
      | (?:anzeige|werbung|advertisement|reklama|publicidad|publicité|pubblicità|publicidade|advertentie|sponsored|ad)
        \W*$
      | copyright|©|\(c\)\s*\d{4}|all\s+rights\s+reserved|alle\s+rechte\s+vorbehalten|vervielfältigung
      | tous\s+droits\s+réservés|todos\s+los\s+derechos|riproduzione\s+riservata|wszelkie\s+prawa
      | impressum\b|datenschutz|privacy\s+policy|terms\s+of\s+(?:use|service)|wir\s+verwenden\s+cookies
      | we\s+use\s+cookies|cookie-?\s*(?:policy|settings|einstellungen|richtlinie|hinweis|banner)
      | (?:foto|fotos|fot\.|bild|bilder|bildquelle|titelbild|photo|photos|image|credit|crédits?(?:\s+photos?)?
         |quelle|source|źródło|fuente|fonte|abbildung\s*\d*|grafik|video)\s*:
      | aufrufe\s*:|views\s*:|hinzugefügt\s+von|veröffentlicht\s+(?:am|von)|published\s+(?:on|by)|publié\s+le
      | publicado\s+(?:el|em)|pubblicato\s+il|letzte\s+(?:änderung|aktualisierung)|aktualisiert\s+am|updated\s*:
      | stand\s*:|mis\s+à\s+jour|ultima\s+modifica|lesezeit|reading\s+time|\d+\s+min(?:\.|uten)?\s+(?:read|lesezeit)
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# Strong furniture signals anywhere in a short block.
_FURNITURE_ANYWHERE = re.compile(
    r"all\s+rights\s+reserved|alle\s+rechte\s+vorbehalten|tous\s+droits\s+réservés|derechos\s+reservados"
    r"|diritti\s+riservati|riproduzione\s+riservata|prawa\s+zastrzeżone|direitos\s+reservados"
    r"|rechten\s+voorbehouden|newsletter|push\s+notifications|affiliate|we\s+use\s+cookies|wir\s+verwenden\s+cookies"
    r"|nous\s+utilisons\s+des\s+cookies|utilizamos\s+cookies|unsubscribe|opt\s+out",
    re.IGNORECASE,
)
# "... Foto: Name/Agentur": a caption with its credit at the end.
_CREDIT = re.compile(r"(?:foto|bild|photo|image|credit|quelle|source|©)\s*:\s*\S", re.IGNORECASE)
# A line that is only a date, a time or both.
_DATE_ONLY = re.compile(
    r"^[\W_]*(?:\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}(?::\d{2})?\s*(?:am|pm|uhr)?"
    r"|\d{1,2}\.?\s+\w+\.?\s+\d{4}|[\s,|/-])+[\W_]*$",
    re.IGNORECASE,
)
# Headings that open a section of page furniture: nothing after them is the article any more.
_ENDS_ARTICLE = re.compile(
    r"""^[\W\d_]*(?:related|ähnliche|verwandte|mehr\s+(?:zum|zu|aus|von)\b|weitere\s|weiterführende|das\s+könnte
      |auch\s+interessant|lesen\s+sie\s+auch|empfohlen|recommended|you\s+(?:may|might)\s+also|read\s+(?:more|next)
      |more\s+(?:from|on|stories)|top[-\s]themen|neueste|meistgelesen|die\s+meistgelesenen|zobacz|czytaj
      |temas\s+relacionados|noticias\s+relacionadas|(?:le|te)\s+puede|à\s+lire|lire\s+aussi|leggi\s+anche
      |(?:keine\s+)?kommentare|comments?\b|leave\s+a\s+(?:reply|comment)|schreibe\s+einen|über\s+den\s+autor
      |about\s+the\s+author|teilen|share|newsletter|entdecke)""",
    re.IGNORECASE | re.VERBOSE,
)
_SENTENCE_END = re.compile(r"""[.!?…:;"'”“»«)]\s*$""")


def _is_sentence_like(block: Block, lenient_paragraphs: bool = False) -> bool:
    """Prose rather than a label: four words or more, few links, and a sentence end (or, with
    `lenient_paragraphs`, a paragraph of 60+ characters: ledes often end without a full stop)."""
    if block.link_density >= 0.3 or block.text.count(" ") < 3:
        return False
    if lenient_paragraphs and block.kind == "p" and len(block.text) >= 60:
        return True
    return _SENTENCE_END.search(block.text) is not None


def furniture_reason(block: Block, settings: ExtractionSettings) -> str:
    """Why a block is page furniture on its own (`phrase`, `date`, `credit`, `link_list`), or ""."""
    text = block.text
    if block.is_math:
        return ""
    if len(text) <= settings.phrase_max_chars:
        if _FURNITURE.match(text) or _FURNITURE_ANYWHERE.search(text):
            return "phrase"
        if len(text) <= 60 and _DATE_ONLY.match(text):
            return "date"
        if block.kind != "h" and _CREDIT.search(text):
            return "credit"
    if len(text) <= settings.link_list_max_chars and block.link_density >= settings.link_list_density:
        return "link_list"
    return ""


def _drop(block: Block, reason: str) -> None:
    block.keep = False
    block.reason = reason


def classify_blocks(blocks: list[Block], settings: ExtractionSettings) -> list[Block]:
    """Set `keep` (and `reason` when dropped) on every block; return the kept ones. Rules in the module docstring."""
    if not all(b.in_container for b in blocks):
        # Outside a declared article container only the title and lede before it may be article text.
        first_inside = next((i for i, b in enumerate(blocks) if b.in_container), len(blocks))
        for i, b in enumerate(blocks):
            if not b.in_container and (i > first_inside or not (b.kind == "h" or _is_sentence_like(b, True))):
                _drop(b, "outside_container")
    candidates = [b for b in blocks if b.keep]
    for b in candidates:
        reason = furniture_reason(b, settings)
        if reason:
            _drop(b, reason)
    anchors = [
        i
        for i, b in enumerate(candidates)
        if b.keep
        and (
            b.is_math
            or (len(b.text) >= settings.anchor_min_chars and b.link_density < settings.anchor_max_link_density)
        )
    ]
    if anchors and settings.trim_to_text:
        first, last = anchors[0], anchors[-1]
        for i, b in enumerate(candidates):
            if not b.keep:
                continue
            if i < first and not (b.kind == "h" or _is_sentence_like(b, True)):
                _drop(b, "before_text")
            elif i > last and not (b.kind != "h" and (b.is_math or _is_sentence_like(b))):
                _drop(b, "after_text")
        # After the text, a heading such as "Related articles" or "Comments" ends the article.
        for i in range(last + 1, len(candidates)):
            if candidates[i].kind == "h" and _ENDS_ARTICLE.match(candidates[i].text):
                for rest in candidates[i:]:
                    if rest.keep:
                        _drop(rest, "after_furniture_heading")
                break
    # A heading only stays when text follows it.
    following_text = False
    for b in reversed(candidates):
        if not b.keep:
            continue
        if b.kind == "h" and not following_text:
            _drop(b, "heading_without_text")
        elif b.kind != "h":
            following_text = True
    return [b for b in blocks if b.keep]


def render_blocks(blocks: Iterable[Block]) -> str:
    """Paragraphs, headings and code are separated by a blank line; consecutive list items and div lines by one
    newline."""
    parts: list[str] = []
    previous: Block | None = None
    for b in blocks:
        if previous is not None:
            tight = b.kind in ("li", "div") and previous.kind in ("li", "div")
            parts.append("\n" if tight else "\n\n")
        parts.append(b.text)
        previous = b
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# the extractor
# ---------------------------------------------------------------------------------------------------------------


def dump_markup(tree: HTMLTree, skip_selectors: tuple[str, ...] = (), whole_page: bool = False) -> str:
    """resiliparse's text dump as minimal HTML (block structure and links; no comments, alt texts or bullets),
    restricted to its main-content heuristic, or with `whole_page` all of the body including <noscript> (some
    pages put their whole no-JavaScript version there)."""
    return extract_plain_text(
        tree,
        skip_elements=list(skip_selectors) or None,
        preserve_formatting="minimal_html",
        main_content=not whole_page,
        noscript=whole_page,
        links=True,
        comments=False,
        alt_texts=False,
        list_bullets=False,
    )


def _classified_blocks(
    markup: str, has_container: bool, settings: ExtractionSettings, annotate: Callable[[list[Block]], None] | None
) -> list[Block]:
    """Every block of a dump, each with its `keep` verdict (and `reason` when dropped)."""
    blocks = parse_minimal_html(markup)
    if has_container:
        blocks = _split_by_container(blocks)
    if annotate is not None:
        annotate(blocks)
    if settings.classify_blocks:
        classify_blocks(blocks, settings)
    return blocks


def _kept_chars(blocks: list[Block]) -> int:
    return sum(len(b.text) for b in blocks if b.keep)


def extract_blocks_from_tree(
    tree: HTMLTree,
    settings: ExtractionSettings,
    annotate: Callable[[list[Block]], None] | None = None,
    *,
    include_dropped: bool = False,
) -> list[Block]:
    """The kept blocks of a parsed page (with `include_dropped`, every block of the dump the verdicts came from,
    each with its `keep` flag and drop `reason`: what the learned block classifier starts from). `annotate` sees
    every block before classification (the math extractor rewrites delimiters there and flags blocks that hold
    LaTeX).

    When resiliparse's main-content heuristic leaves less than `whole_page_below_chars` of text (it sometimes
    drops a whole list or table that is the page's content), the page is dumped again without it (and with
    <noscript>), minus the navigation chrome, and the longer of the two classified results wins.
    """
    if tree.body is None:
        return []
    has_container = settings.use_container and mark_content_container(tree, settings.container_min_share)
    blocks = _classified_blocks(dump_markup(tree, settings.skip_selectors), has_container, settings, annotate)
    if _kept_chars(blocks) < settings.whole_page_below_chars:
        chrome = (*settings.skip_selectors, PAGE_CHROME_SELECTORS)
        whole = _classified_blocks(dump_markup(tree, chrome, whole_page=True), has_container, settings, annotate)
        if _kept_chars(whole) > _kept_chars(blocks):
            for block in whole:
                block.whole_page = True
            blocks = whole
    return blocks if include_dropped else [b for b in blocks if b.keep]


def extract_main_text(html: str, *, favour: str = "balanced", url: str | None = None) -> str:
    """The main text of an HTML page, boilerplate removed; "" when nothing is left.

    `url` is accepted so every extractor has one signature (trafilatura uses it for metadata); no rule here
    depends on it.
    """
    settings = settings_for(favour)
    if not html or not html.strip():
        return ""
    return render_blocks(extract_blocks_from_tree(HTMLTree.parse(html), settings))
