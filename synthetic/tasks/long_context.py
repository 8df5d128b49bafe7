"""Long-context QA (Nano 2 Phase LC): long documents get question-answer pairs about some of their chunks appended.

Paper-facts §3: academic documents over 32k tokens are split into 1,024-token chunks; 10% of the chunks get QA
pairs (written by Qwen-2.5-72B-Instruct there), appended at the end of the document, so answering needs the whole
context. Here: documents of at least `min_document_tokens` are chunked with the configured tokenizer, a hashed
`qa_share` of each document's chunks (at least one) is chosen, each chosen chunk is one request, and the document
keeps the pairs of every chunk whose output parses (a chunk that fails is a counted drop; a document whose chunks
all fail is dropped as `no_valid_qa`).
"""

from __future__ import annotations

from collections.abc import Sequence

from synthetic.tasks.common import QAPair, format_qa_pairs, unit_hash


def choose_chunks(n_chunks: int, share: float, seed: int, doc_id: str) -> list[int]:
    """Indices of round(share * n) chunks (at least one), chosen by hash, in document order."""
    if n_chunks <= 0:
        return []
    k = min(n_chunks, max(1, round(share * n_chunks)))
    ranked = sorted(range(n_chunks), key=lambda i: unit_hash(seed, doc_id, "chunk", i))
    return sorted(ranked[:k])


def append_qa(document: str, pairs: Sequence[QAPair]) -> str:
    return f"{document.rstrip()}\n\n{format_qa_pairs(pairs)}"
