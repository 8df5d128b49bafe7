"""Long-context QA (Nano 2 Phase LC): long documents get question-answer pairs about some of their chunks appended.

Paper-facts §3: academic documents over 32k tokens are split into 1,024-token chunks; 10% of the chunks get QA
pairs (written by Qwen-2.5-72B-Instruct there), appended at the end of the document, so answering needs the whole
context. Here: documents of at least `min_document_tokens` are chunked with the configured tokenizer, a hashed
`qa_share` of each document's chunks (at least one) is chosen, each chosen chunk is one request, and the document
keeps the pairs of every chunk whose output parses (a chunk that fails is a counted drop; a document whose chunks
all fail is dropped as `no_valid_qa`). The document with its pairs appended is written as a contract document in
`subset=long_context_qa`, with the long document as its parent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from nano2.contracts.documents import Meta
from nano2.manifest import Manifest
from synthetic.inputs import SourceDoc, iter_documents
from synthetic.prompting import load_prompt
from synthetic.stage import Job, StageContext, carried_metadata, input_refs, job_sampling, unique
from synthetic.tasks.common import QAPair, answer_problem, chunk_by_tokens, format_qa_pairs, parse_qa_pairs, unit_hash

TASK = "long_context_qa"


def choose_chunks(n_chunks: int, share: float, seed: int, doc_id: str) -> list[int]:
    """Indices of round(share * n) chunks (at least one), chosen by hash, in document order."""
    if n_chunks <= 0:
        return []
    k = min(n_chunks, max(1, round(share * n_chunks)))
    ranked = sorted(range(n_chunks), key=lambda i: unit_hash(seed, doc_id, "chunk", i))
    return sorted(ranked[:k])


def append_qa(document: str, pairs: Sequence[QAPair]) -> str:
    return f"{document.rstrip()}\n\n{format_qa_pairs(pairs)}"


def run_long_context(ctx: StageContext) -> Manifest:
    """Ask for QA pairs about a hashed share of each long document's chunks; write the document with every pair
    that parsed appended, once all of its chunks are answered."""
    cfg = ctx.cfg.long_context
    before = ctx.snapshot()
    out = ctx.documents("long_context")
    prompt = load_prompt(TASK)
    expected: dict[str, int] = {}

    def documents() -> Iterator[SourceDoc]:
        taken = 0
        for doc in unique(d for spec in cfg.inputs for d in iter_documents(spec)):
            if cfg.max_documents is not None and taken >= cfg.max_documents:
                return
            tokens = ctx.counter.count(doc.text)  # every shard counts every document: max_documents is run-wide
            if tokens < cfg.min_document_tokens:
                if ctx.in_shard(doc.id):
                    out.drop(TASK, doc.id, "document_too_short", {"tokens": tokens})
                continue
            taken += 1
            if ctx.in_shard(doc.id):
                yield doc

    def jobs() -> Iterator[Job]:
        for doc in documents():
            chunks = chunk_by_tokens(doc.text, cfg.chunk_tokens, ctx.counter)
            chosen = choose_chunks(len(chunks), cfg.qa_share, ctx.cfg.seed, doc.id)
            expected[doc.id] = len(chosen) * cfg.settings.samples
            for index in chosen:
                for sample in range(cfg.settings.samples):
                    yield Job(
                        task=TASK,
                        source_id=f"{doc.id}#c{index}",
                        sample_index=sample,
                        prompt=prompt,
                        messages=prompt.messages(False, chunk=chunks[index]),
                        sampling=job_sampling(cfg.settings, ctx.cfg.seed, sample),
                        thinking=False,
                        payload={"doc": doc, "chunk": index},
                    )

    pending: dict[str, list[tuple[int, list[QAPair]]]] = {}
    for job, response in ctx.generator.run(jobs()):
        doc: SourceDoc = job.payload["doc"]
        parsed = answer_problem(response, cfg.settings) or parse_qa_pairs(response.texts[0])
        got = pending.setdefault(doc.id, [])
        if parsed.ok:
            got.append((job.payload["chunk"], parsed.value))
        else:
            out.drop(TASK, f"{job.source_id}/{job.sample_index}", parsed.drop or "", parsed.details)
            got.append((job.payload["chunk"], []))
        if len(got) < expected[doc.id]:
            continue
        pairs = [p for _, chunk_pairs in pending.pop(doc.id) for p in chunk_pairs]
        if not pairs:
            out.drop(TASK, doc.id, "no_valid_qa", {"chunks_asked": expected[doc.id]})
            continue
        out.add(
            doc_id=f"{TASK}/{doc.id}",
            text=append_qa(doc.text, pairs),
            source=doc.source,
            metadata={**carried_metadata(doc.metadata), **job.document_metadata(ctx.model), Meta.PARENT_ID: doc.id},
            subset=TASK,
        )
    return ctx.finish(out, "long_context", input_refs(s.path for s in cfg.inputs), before, prompts={"qa": prompt.tag})
