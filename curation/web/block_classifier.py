"""A learned block classifier for main-text extraction: keeps link-rich prose the rules drop, still drops navigation.

The rule-based extractor (`curation.main_text.classify_blocks`) drops a block whose characters are mostly link text, so
a Wikipedia lead with more than half of its words linked is lost. Here every block of the dump the rules classify
(resiliparse's main content, or the whole page when that left too little) gets a probability of being main text
from a logistic regression over cheap features, in the spirit of boilerpipe / Dragnet / Web2Text:

- the block itself: length, words, characters outside links, link density, punctuation, digits, capitals,
  sentence end, kind (h/p/li/pre/div);
- the rules' verdict: kept or not, and why not (stock phrase, date, credit, link list, before/after the text,
  outside the declared article container, ...), whether it came from the whole-page fallback;
- its place and neighbours: relative position, the same signals for the two blocks before and after it.

A long paragraph that reads as prose is kept whatever its link share (`is_link_rich_prose`).

Labels come from the gold snippets of the trafilatura evaluation set (a block holding a `with` snippet, or held in
one, is main text; one holding a `without` snippet is boilerplate; the rest are unlabelled and not trained on).
The model is a few hundred floats in `models/block_classifier.json`, trained by

    .venv/bin/python -m curation.web.block_classifier --data ../shared/data

and judged only by two-fold cross-validation in `benchmarks/bench_extract.py` (a model trained on one half of the
gold pages scores the other half, and the reverse).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from resiliparse.parse.html import HTMLTree

from curation.logistic import fit_logistic, sigmoid
from curation.main_text import (
    Block,
    ExtractionSettings,
    extract_blocks_from_tree,
    render_blocks,
    settings_for,
)
from curation.web.evaluate import GOLD_SET, GoldPage, load_gold_pages, normalise_whitespace, score_snippets
from nano2.errors import Nano2Error

MODEL_PATH = Path(__file__).resolve().parent / "models" / "block_classifier.json"
KINDS = ("h", "p", "li", "pre", "div")
RULE_REASONS = (
    "phrase", "date", "credit", "link_list", "outside_container", "before_text", "after_text",
    "after_furniture_heading", "heading_without_text",
)  # fmt: skip
_PUNCTUATION = re.compile(r"[.,;:!?]")
_SENTENCE_END = re.compile(r"""[.!?…:;"'”“»«)]\s*$""")
_DIGITS = re.compile(r"\d")
NEIGHBOUR_OFFSETS = (-2, -1, 1, 2)


@dataclass(slots=True)
class PageBlock:
    """A block of the whole-page dump with what the cheap signals say about it."""

    block: Block
    in_main: bool  # from resiliparse's main-content dump (not the whole-page fallback)
    rule_kept: bool  # the rule-based extractor kept a block with this text
    rule_reason: str  # why the rules dropped it ("" when kept)


def page_blocks(tree: HTMLTree, settings: ExtractionSettings | None = None) -> list[PageBlock]:
    """Every block of the dump the rule-based extractor classifies (resiliparse's main content, or the whole page
    when that left too little), each with the rules' verdict: the model keeps or overrules it."""
    settings = settings or settings_for("balanced")
    if tree.body is None:
        return []
    blocks = extract_blocks_from_tree(tree, settings, include_dropped=True)
    # a kept block passed `furniture_reason`; a dropped one says why it was dropped
    return [PageBlock(b, not b.whole_page, b.keep, b.reason) for b in blocks]


def _own_features(pb: PageBlock) -> list[float]:
    text = pb.block.text
    n = len(text)
    words = text.count(" ") + 1
    return [
        math.log1p(n),
        math.log1p(words),
        pb.block.link_density,
        pb.block.link_density * math.log1p(n),
        math.log1p(max(0, n - pb.block.link_chars)),
        len(_PUNCTUATION.findall(text)) / max(1, words),
        len(_DIGITS.findall(text)) / max(1, n),
        float(text[:1].isupper()),
        float(_SENTENCE_END.search(text) is not None),
        float(pb.in_main),
        float(pb.rule_kept),
        float(pb.block.in_container),
    ]


OWN_NAMES = (
    "log_chars", "log_words", "link_density", "link_density_x_log_chars", "log_plain_chars", "punct_per_word",
    "digit_share", "starts_upper", "sentence_end", "in_main", "rule_kept", "in_container",
)  # fmt: skip
NEIGHBOUR_NAMES = ("log_chars", "link_density", "in_main", "rule_kept", "sentence_end")
_NEIGHBOUR_INDEX = tuple(OWN_NAMES.index(name) for name in NEIGHBOUR_NAMES)
FEATURE_NAMES = (
    *OWN_NAMES,
    *(f"kind_{k}" for k in KINDS),
    *(f"rule_{r}" for r in RULE_REASONS),
    "position",
    "page_main_share",
    "page_rule_share",
    "page_log_blocks",
    *(f"n{offset:+d}_{name}" for offset in NEIGHBOUR_OFFSETS for name in NEIGHBOUR_NAMES),
)


def block_features(blocks: Sequence[PageBlock]) -> np.ndarray:
    """One row of `FEATURE_NAMES` per block."""
    n = len(blocks)
    if n == 0:
        return np.zeros((0, len(FEATURE_NAMES)))
    own = np.array([_own_features(pb) for pb in blocks])
    kinds = np.array([[pb.block.kind == k for k in KINDS] for pb in blocks], dtype=np.float64)
    reasons = np.array([[pb.rule_reason == r for r in RULE_REASONS] for pb in blocks], dtype=np.float64)
    chars = np.array([len(pb.block.text) for pb in blocks], dtype=np.float64)
    total = max(1.0, chars.sum())
    page = np.column_stack(
        [
            np.arange(n) / max(1, n - 1),
            np.full(n, (chars * own[:, OWN_NAMES.index("in_main")]).sum() / total),
            np.full(n, (chars * own[:, OWN_NAMES.index("rule_kept")]).sum() / total),
            np.full(n, math.log1p(n)),
        ]
    )
    neighbour_source = own[:, _NEIGHBOUR_INDEX]
    padded = np.vstack([np.zeros((2, len(NEIGHBOUR_NAMES))), neighbour_source, np.zeros((2, len(NEIGHBOUR_NAMES)))])
    neighbours = [padded[2 + offset : 2 + offset + n] for offset in NEIGHBOUR_OFFSETS]
    return np.hstack([own, kinds, reasons, page, *neighbours])


@dataclass(frozen=True)
class BlockModel:
    """Standardised logistic regression: p(main text) = sigmoid(((x - mean) / scale) . weights + bias)."""

    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        if len(features) == 0:
            return np.zeros(0)
        return sigmoid(((features - self.mean) / self.scale) @ self.weights + self.bias)

    def to_json(self) -> dict:
        return {
            "feature_names": list(self.feature_names),
            "mean": self.mean.round(6).tolist(),
            "scale": self.scale.round(6).tolist(),
            "weights": self.weights.round(6).tolist(),
            "bias": round(self.bias, 6),
            "threshold": self.threshold,
        }

    @classmethod
    def from_json(cls, data: dict) -> BlockModel:
        names = tuple(data["feature_names"])
        if names != FEATURE_NAMES:
            raise Nano2Error(
                f"block classifier features {names} do not match this code's {FEATURE_NAMES}: retrain it with "
                "`python -m curation.web.block_classifier`"
            )
        return cls(
            names,
            np.asarray(data["mean"], dtype=np.float64),
            np.asarray(data["scale"], dtype=np.float64),
            np.asarray(data["weights"], dtype=np.float64),
            float(data["bias"]),
            float(data["threshold"]),
        )


@cache
def shipped_model() -> BlockModel:
    """The model trained on all dev gold pages, shipped in the package."""
    if not MODEL_PATH.exists():
        raise Nano2Error(f"{MODEL_PATH} is missing: train it with `python -m curation.web.block_classifier`")
    return BlockModel.from_json(json.loads(MODEL_PATH.read_text(encoding="utf-8")))


PROSE_MIN_CHARS = 150
PROSE_MIN_PLAIN_CHARS = 60
PROSE_MIN_WORDS = 16


def is_link_rich_prose(pb: PageBlock) -> bool:
    """A paragraph of resiliparse's main content that reads as prose whatever its share of link text: long, with
    enough words outside links, ending a sentence (a Wikipedia lead with most of its nouns linked). The gold set
    has few such paragraphs, so the model alone learns to drop them with the navigation; this rule puts them back.
    The constants were set from that description, not tuned on the gold pages."""
    block = pb.block
    text = block.text
    return (
        pb.in_main
        and block.kind == "p"
        and len(text) >= PROSE_MIN_CHARS
        and len(text) - block.link_chars >= PROSE_MIN_PLAIN_CHARS
        and text.count(" ") + 1 >= PROSE_MIN_WORDS
        and _SENTENCE_END.search(text) is not None
    )


def select_blocks(blocks: Sequence[PageBlock], probabilities: np.ndarray, threshold: float) -> list[Block]:
    """Blocks at or above `threshold`, and link-rich prose (`is_link_rich_prose`); a heading survives only when
    kept text follows it before the next heading."""
    kept = [pb.block for pb, p in zip(blocks, probabilities, strict=True) if p >= threshold or is_link_rich_prose(pb)]
    result: list[Block] = []
    for i, block in enumerate(kept):
        if block.kind == "h" and (i + 1 == len(kept) or kept[i + 1].kind == "h"):
            continue
        result.append(block)
    return result


def extract_with_model(html: str, model: BlockModel | None = None) -> str:
    """The main text of a page as the block classifier sees it; "" when nothing is left."""
    if not html or not html.strip():
        return ""
    model = model or shipped_model()
    blocks = page_blocks(HTMLTree.parse(html))
    return render_blocks(select_blocks(blocks, model.probabilities(block_features(blocks)), model.threshold))


# ---------------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------------


def block_labels(blocks: Sequence[PageBlock], page: GoldPage) -> np.ndarray:
    """1 main text, 0 boilerplate, -1 unlabelled (or both) per block, from the page's gold snippets."""
    wanted = [normalise_whitespace(s) for s in page.with_snippets if s.strip()]
    unwanted = [normalise_whitespace(s) for s in page.without_snippets if s.strip()]
    labels = np.full(len(blocks), -1, dtype=np.int8)
    for i, pb in enumerate(blocks):
        text = normalise_whitespace(pb.block.text)
        if not text:
            continue

        def matches(snippets: list[str], text: str = text) -> bool:
            return any(s in text or (len(text) >= 15 and text in s) for s in snippets)

        is_main, is_boilerplate = matches(wanted), matches(unwanted)
        if is_main != is_boilerplate:
            labels[i] = int(is_main)
    return labels


@dataclass
class PreparedPage:
    """A gold page parsed once: its blocks, their features and labels."""

    page: GoldPage
    blocks: list[PageBlock]
    features: np.ndarray
    labels: np.ndarray


def prepare_pages(pages: Iterable[GoldPage]) -> list[PreparedPage]:
    prepared = []
    for page in pages:
        blocks = page_blocks(HTMLTree.parse(page.html)) if page.html.strip() else []
        prepared.append(PreparedPage(page, blocks, block_features(blocks), block_labels(blocks, page)))
    return prepared


THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.2, 0.81, 0.05))


def choose_threshold(pages: Sequence[PreparedPage], model: BlockModel, leak_weight: float = 1.0) -> float:
    """The threshold that maximises found - leak_weight * leaked on the snippets of `pages` (the training pages)."""
    best, best_value = 0.5, -math.inf
    probabilities = [model.probabilities(p.features) for p in pages]
    for threshold in THRESHOLDS:
        found = kept = with_total = without_total = 0
        for prepared, probs in zip(pages, probabilities, strict=True):
            text = render_blocks(select_blocks(prepared.blocks, probs, threshold))
            result = score_snippets(text, prepared.page.with_snippets, prepared.page.without_snippets)
            found, with_total = found + result.with_found, with_total + result.with_total
            kept, without_total = kept + result.without_kept, without_total + result.without_total
        value = found / max(1, with_total) - leak_weight * kept / max(1, without_total)
        if value > best_value:
            best, best_value = threshold, value
    return best


def train_block_model(pages: Sequence[PreparedPage], l2: float = 1.0) -> BlockModel:
    """Fit on the labelled blocks of `pages`; the threshold is chosen on the same pages' snippets."""
    labelled = [(p.features[p.labels >= 0], p.labels[p.labels >= 0]) for p in pages if len(p.features)]
    x = np.vstack([f for f, _ in labelled])
    y = np.concatenate([lab for _, lab in labelled]).astype(np.float64)
    if len(np.unique(y)) < 2:
        raise Nano2Error("block classifier training needs both main-text and boilerplate blocks")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    weights, bias = fit_logistic((x - mean) / scale, y, l2=l2)
    model = BlockModel(FEATURE_NAMES, mean, scale, weights, bias, 0.5)
    return BlockModel(FEATURE_NAMES, mean, scale, weights, bias, choose_threshold(pages, model))


def fold_of(page: GoldPage) -> int:
    """0 or 1: the two cross-validation halves (the `held_out` bit of the gold pages)."""
    return int(page.held_out)


def main() -> None:
    parser = argparse.ArgumentParser(description="train the shipped block classifier on all dev gold pages")
    parser.add_argument("--data", default="../shared/data", help="shared data root (holds " + GOLD_SET + ")")
    parser.add_argument("--out", default=str(MODEL_PATH))
    args = parser.parse_args()
    pages = prepare_pages(load_gold_pages(Path(args.data) / GOLD_SET))
    model = train_block_model(pages)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
    labelled = sum(int((p.labels >= 0).sum()) for p in pages)
    print(f"trained on {len(pages)} pages, {labelled} labelled blocks; threshold {model.threshold}; wrote {out}")


if __name__ == "__main__":
    main()
