"""Math-preserving extraction: formulas survive as LaTeX (`$...$` inline, `$$...$$` display) instead of vanishing.

Nemotron-CC-Math renders pages in a browser and keeps LaTeX; we cannot run a browser per page, so we read the
formula sources that pages ship before any JavaScript runs and put them back into the DOM as text:

- MathJax 2: `<script type="math/tex">` (`; mode=display` for display math); rendered previews are dropped;
- KaTeX: the `<annotation encoding="application/x-tex">` inside each `.katex` element;
- MathML `<math>`: its `alttext`, else a TeX annotation, else a small MathML-to-LaTeX conversion (Wikipedia's
  `.mwe-math-element` keeps one copy, without the fallback image);
- images whose `alt` is LaTeX (WordPress `img.latex`, codecogs / mathtex / latex.php sources);
- `\\(...\\)` and `\\[...\\]` already in the text become `$...$` / `$$...$$`; `$...$` is left as it is.

Then the page goes through the same boilerplate removal as `extract_main_text`, with blocks holding LaTeX never
treated as furniture. `detect_math` decides per page, cheaply, whether this variant is worth running;
`extract_page` is the math-aware extraction of one page the pipeline runs.
"""

from __future__ import annotations

import re

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import ElementNode, HTMLTree, Node

from curation.main_text import Block, extract_blocks_from_tree, extract_main_text, render_blocks, settings_for

# ---------------------------------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------------------------------

# Formula sources in the markup: any one of them makes a page a math page.
_MATHML_OR_MATHJAX = ("<math", "math/tex", "mwe-math-element")
_KATEX = ('class="katex', "application/x-tex")
_LATEX_IMAGE = re.compile(
    r"""<img\b[^>]*?(?:class\s*=\s*["'][^"']*\blatex\b|src\s*=\s*["'][^"']*(?:latex\.php|latex\.codecogs|/latex\?))""",
    re.IGNORECASE,
)
_MATH_LIBRARY = ("mathjax", "MathJax", "katex", "KaTeX")
# A LaTeX command, or a sub/superscript with a braced or one-character argument.
_TEX_INSIDE = re.compile(
    r"\\[a-zA-Z]{2,}|[\^_]\{|[a-zA-Z0-9)]\^[a-zA-Z0-9\\]|(?<![a-zA-Z])[a-zA-Z]_[a-zA-Z0-9](?![a-zA-Z])"
)
# Delimited spans, each scan bounded in length so the search stays linear in the page size.
_DELIMITED = re.compile(
    r"\$\$[^$]{1,2000}\$\$|\\\[[\s\S]{1,2000}?\\\]|\\\([^\n]{1,500}?\\\)|(?<![\w$\\])\$([^$\n]{1,300})\$(?![\w$])"
)
_DOLLAR_SPAN = re.compile(r"\$[^$\n]+\$")


def count_tex_spans(text: str) -> int:
    """Delimited spans that look like LaTeX: `$$..$$`, `\\[..\\]`, `\\(..\\)`, and `$..$` with a TeX command or a
    sub/superscript inside (so "$5 and $10" does not count)."""
    if "$" not in text and "\\" not in text:
        return 0
    count = 0
    for match in _DELIMITED.finditer(text):
        inline = match.group(1)
        if inline is None or (inline == inline.strip() and _TEX_INSIDE.search(inline)):
            count += 1
    return count


def visible_text(html: str) -> str:
    """The text a reader sees, without code blocks (where `$x` and `\\(` are shell or JavaScript, not math)."""
    return extract_plain_text(html, skip_elements=["pre", "code", "textarea"], alt_texts=False)


def has_math_markup(html: str) -> bool:
    """A formula source in the markup: MathML, a MathJax script, a KaTeX annotation, Wikipedia math, a LaTeX
    image. Three substring scans on an ordinary page (each ~0.1 ms on 150 KB); the detailed tests only run where one
    of `math`, `katex`, `latex` occurs at all."""
    if "math" in html and any(marker in html for marker in _MATHML_OR_MATHJAX):
        return True
    if "katex" in html and any(marker in html for marker in _KATEX):
        return True
    return "latex" in html and _LATEX_IMAGE.search(html) is not None


def tex_spans_needed(html: str, min_tex_spans: int = 2) -> int:
    """One LaTeX span is enough on a page that loads MathJax or KaTeX (which would typeset it), else two."""
    return 1 if any(library in html for library in _MATH_LIBRARY) else min_tex_spans


def has_tex_text(html: str, text: str | None = None, min_tex_spans: int = 2) -> bool:
    """Enough LaTeX-looking delimited spans in the page's text (`tex_spans_needed`). `text` is the visible or
    extracted text when the caller has it; otherwise it is rendered here, and only if the markup has a `$`, `\\(`
    or `\\[` at all."""
    if text is None:
        text = visible_text(html) if ("$" in html or "\\(" in html or "\\[" in html) else ""
    spans = count_tex_spans(text)
    return spans >= min_tex_spans or (spans > 0 and tex_spans_needed(html, min_tex_spans) <= spans)


def detect_math(html: str, *, text: str | None = None, min_tex_spans: int = 2) -> bool:
    """Whether a page carries formulas worth keeping as LaTeX: a formula source in the markup (`has_math_markup`)
    or LaTeX in its text (`has_tex_text`). A page that merely loads MathJax is not a math page, and "$5 and $10"
    is not LaTeX. `FastExtractor` passes its plain extract as `text`, so detection costs a few substring scans."""
    if not html:
        return False
    return has_math_markup(html) or has_tex_text(html, text, min_tex_spans)


# ---------------------------------------------------------------------------------------------------------------
# MathML to LaTeX (for <math> without alttext or TeX annotation)
# ---------------------------------------------------------------------------------------------------------------

_MO_TO_TEX = {
    "−": "-", "×": "\\times", "·": "\\cdot", "⋅": "\\cdot", "÷": "\\div", "±": "\\pm", "∓": "\\mp", "≤": "\\leq",
    "≥": "\\geq", "≠": "\\neq", "≈": "\\approx", "≡": "\\equiv", "∼": "\\sim", "→": "\\to", "←": "\\leftarrow",
    "⇒": "\\Rightarrow", "⇔": "\\Leftrightarrow", "∞": "\\infty", "∑": "\\sum", "∏": "\\prod", "∫": "\\int",
    "∂": "\\partial", "∇": "\\nabla", "∈": "\\in", "∉": "\\notin", "⊂": "\\subset", "⊆": "\\subseteq", "∪": "\\cup",
    "∩": "\\cap", "∀": "\\forall", "∃": "\\exists", "¬": "\\neg", "∧": "\\wedge", "∨": "\\vee", "…": "\\ldots",
    "⋯": "\\cdots", "′": "'", "∘": "\\circ", "⟨": "\\langle", "⟩": "\\rangle", "∥": "\\parallel", "√": "\\surd",
}  # fmt: skip
_MI_TO_TEX = {
    "α": "\\alpha", "β": "\\beta", "γ": "\\gamma", "δ": "\\delta", "ε": "\\varepsilon", "ϵ": "\\epsilon",
    "ζ": "\\zeta", "η": "\\eta", "θ": "\\theta", "ι": "\\iota", "κ": "\\kappa", "λ": "\\lambda", "μ": "\\mu",
    "ν": "\\nu", "ξ": "\\xi", "π": "\\pi", "ρ": "\\rho", "σ": "\\sigma", "τ": "\\tau", "υ": "\\upsilon",
    "φ": "\\varphi", "ϕ": "\\phi", "χ": "\\chi", "ψ": "\\psi", "ω": "\\omega", "Γ": "\\Gamma", "Δ": "\\Delta",
    "Θ": "\\Theta", "Λ": "\\Lambda", "Ξ": "\\Xi", "Π": "\\Pi", "Σ": "\\Sigma", "Φ": "\\Phi", "Ψ": "\\Psi",
    "Ω": "\\Omega", "ℝ": "\\mathbb{R}", "ℕ": "\\mathbb{N}", "ℤ": "\\mathbb{Z}", "ℚ": "\\mathbb{Q}", "ℂ": "\\mathbb{C}",
}  # fmt: skip
_NAMED_FUNCTIONS = frozenset({"sin", "cos", "tan", "log", "ln", "exp", "lim", "max", "min", "sup", "inf", "det"})


def _element_children(node: Node) -> list[Node]:
    return [c for c in node.child_nodes.values() if c.tag is not None and not c.tag.startswith("#")]


def _group(tex: str) -> str:
    return tex if len(tex) == 1 else "{" + tex + "}"


def mathml_to_latex(node: Node) -> str:
    """LaTeX for a MathML element: tokens, rows, scripts, fractions, roots, fences and tables."""
    tag = (node.tag or "").lower()
    if tag in ("#text", "#comment") or not tag:
        return ""
    if tag in ("annotation", "annotation-xml"):
        return ""
    children = _element_children(node)
    parts = [mathml_to_latex(c) for c in children]
    text = (node.text or "").strip()
    if tag == "mi":
        if text in _MI_TO_TEX:
            return _MI_TO_TEX[text] + " "
        return f"\\{text} " if text in _NAMED_FUNCTIONS else text
    if tag == "mo":
        return _MO_TO_TEX.get(text, "\\{" if text == "{" else "\\}" if text == "}" else text)
    if tag == "mn":
        return text
    if tag == "mtext":
        return f"\\text{{{text}}}" if text else ""
    if tag == "mspace":
        return " "
    if tag in ("msup", "msub") and len(parts) == 2:
        return f"{_group(parts[0])}{'^' if tag == 'msup' else '_'}{_group(parts[1])}"
    if tag == "msubsup" and len(parts) == 3:
        return f"{_group(parts[0])}_{_group(parts[1])}^{_group(parts[2])}"
    if tag in ("munder", "mover") and len(parts) == 2:
        return f"{_group(parts[0])}{'_' if tag == 'munder' else '^'}{_group(parts[1])}"
    if tag == "munderover" and len(parts) == 3:
        return f"{_group(parts[0])}_{_group(parts[1])}^{_group(parts[2])}"
    if tag == "mfrac" and len(parts) == 2:
        return f"\\frac{{{parts[0]}}}{{{parts[1]}}}"
    if tag == "msqrt":
        return f"\\sqrt{{{''.join(parts)}}}"
    if tag == "mroot" and len(parts) == 2:
        return f"\\sqrt[{parts[1]}]{{{parts[0]}}}"
    if tag == "mfenced":
        opening, closing = node.getattr("open", "("), node.getattr("close", ")")
        return f"\\left{opening}{','.join(parts)}\\right{closing}"
    if tag == "mtable":
        return "\\begin{matrix}" + " \\\\ ".join(parts) + "\\end{matrix}"
    if tag == "mtr":
        return " & ".join(parts)
    if tag == "semantics":
        return parts[0] if parts else ""
    return "".join(parts) if children else text


# ---------------------------------------------------------------------------------------------------------------
# DOM rewriting
# ---------------------------------------------------------------------------------------------------------------

_DISPLAYSTYLE = re.compile(r"^\{\\displaystyle\s*(.*)\}$", re.DOTALL)
_LATEX_ALT = re.compile(r"\\[a-zA-Z]+|[\^_{}=]")


def _clean_tex(tex: str) -> str:
    tex = " ".join(tex.split())
    match = _DISPLAYSTYLE.match(tex)
    if match:
        tex = match.group(1).strip()
    return tex


def _replace_with_tex(tree: HTMLTree, element: ElementNode, tex: str, display: bool) -> None:
    """Put `$tex$` (inline text) or a `$$tex$$` div (display) where the formula element was."""
    tex = _clean_tex(tex)
    if not tex:
        element.remove()
        return
    if display:
        block = tree.create_element("div")
        block.text = f"$${tex}$$"
        element.replace_with(block)
    else:
        element.replace_with(tree.create_text_node(f" ${tex}$ "))


def _mathml_tex(math: ElementNode) -> str:
    alttext = math.getattr("alttext")
    if alttext and alttext.strip():
        return alttext
    annotation = math.query_selector('annotation[encoding="application/x-tex"],annotation[encoding="TeX"]')
    if annotation is not None and (annotation.text or "").strip():
        return annotation.text
    return mathml_to_latex(math)


def latexify_math_elements(tree: HTMLTree) -> int:
    """Replace every formula element with its LaTeX source as text; returns how many were replaced."""
    body = tree.body
    if body is None:
        return 0
    replaced = 0
    # MathJax 2 previews and rendered output (present in pages saved after typesetting) duplicate the script.
    for rendered in body.query_selector_all(
        ".MathJax_Preview,.MathJax,.MathJax_Display,.MathJax_SVG,.MathJax_CHTML,.mjx-chtml"
    ).values():
        rendered.remove()
    for script in body.query_selector_all('script[type^="math/tex"]').values():
        display = "mode=display" in (script.getattr("type") or "")
        _replace_with_tex(tree, script, script.text or "", display)
        replaced += 1
    # KaTeX: the TeX annotation of each formula; the closest .katex-display/.katex wrapper is replaced.
    for annotation in body.query_selector_all('.katex annotation[encoding="application/x-tex"]').values():
        wrapper = annotation.closest(".katex-display") or annotation.closest(".katex")
        if wrapper is None:
            continue
        _replace_with_tex(tree, wrapper, annotation.text or "", wrapper.matches(".katex-display"))
        replaced += 1
    # Wikipedia: one span holds the MathML (with alttext) and a fallback image with the same LaTeX as alt.
    for wiki in body.query_selector_all(".mwe-math-element").values():
        math = wiki.query_selector("math")
        image = wiki.query_selector("img")
        tex = _mathml_tex(math) if math is not None else (image.getattr("alt", "") if image is not None else "")
        display = (math is not None and math.getattr("display") == "block") or (
            image is not None and "display" in (image.class_name or "")
        )
        _replace_with_tex(tree, wiki, tex, display)
        replaced += 1
    for math in body.query_selector_all("math").values():
        if math.parent is None:
            continue
        _replace_with_tex(tree, math, _mathml_tex(math), math.getattr("display") == "block")
        replaced += 1
    for image in body.query_selector_all(
        'img.latex,img[src*="latex"],img[src*="codecogs"],img[src*="mathtex"],img[src*="cht=tx"],img[class*="tex"]'
    ).values():
        alt = image.getattr("alt") or ""
        if _LATEX_ALT.search(alt):
            _replace_with_tex(tree, image, alt.strip().strip("$"), "display" in (image.class_name or ""))
            replaced += 1
    return replaced


_PAREN_INLINE = re.compile(r"\\\((.+?)\\\)", re.DOTALL)
_BRACKET_DISPLAY = re.compile(r"\\\[(.+?)\\\]", re.DOTALL)


def normalise_delimiters(text: str) -> str:
    """`\\(x\\)` -> `$x$`, `\\[x\\]` -> `$$x$$`; `$...$` and `$$...$$` are kept as written."""
    if "\\(" in text:
        text = _PAREN_INLINE.sub(lambda m: f"${m.group(1).strip()}$", text)
    if "\\[" in text:
        text = _BRACKET_DISPLAY.sub(lambda m: f"$${m.group(1).strip()}$$", text)
    return text


def _annotate_math_blocks(blocks: list[Block]) -> None:
    for block in blocks:
        if block.kind == "pre":  # code: `\\(` there is a regular expression, not math
            continue
        block.text = normalise_delimiters(block.text)
        block.is_math = "$" in block.text and _DOLLAR_SPAN.search(block.text) is not None


def extract_with_math(html: str, *, favour: str = "balanced") -> str:
    """Like `extract_main_text`, but formulas are kept as LaTeX and blocks holding LaTeX are never dropped as
    furniture (nor trimmed as short lines around the text)."""
    settings = settings_for(favour)
    if not html or not html.strip():
        return ""
    tree = HTMLTree.parse(html)
    if tree.body is None:
        return ""
    latexify_math_elements(tree)
    return render_blocks(extract_blocks_from_tree(tree, settings, annotate=_annotate_math_blocks))


def extract_page(html: str, favour: str = "balanced", math_aware: bool = True) -> tuple[str, bool]:
    """(main text, whether the math-preserving variant ran): the per-page work of the pipeline's extractor.

    A formula source in the markup goes straight to the math variant; otherwise the plain extract is checked for
    LaTeX, and only then is the page extracted again with formulas kept."""
    if not math_aware:
        return extract_main_text(html, favour=favour), False
    if has_math_markup(html):
        return extract_with_math(html, favour=favour), True
    text = extract_main_text(html, favour=favour)
    if has_tex_text(html, text):
        return extract_with_math(html, favour=favour), True
    return text, False
