"""Dedup pieces for code: the exact-dedup key and MinHash shingles over code tokens (the reasons of their drops are
the decisions writers' `default_reason`, see curation.code.pipeline)."""

from __future__ import annotations

import re

from datatrove.data import Document
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.hashing import create_hash_func

_BLANK_RUNS = re.compile(r"\n{3,}")
_CODE_TOKEN = re.compile(r"\w+", re.UNICODE)


def normalized_content(doc: Document) -> str:
    """Content for exact dedup: line endings unified, trailing spaces and surrounding blank lines removed."""
    text = doc.text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


class CodeTokenizer:
    """Identifiers, keywords and numbers of (already lower-cased, punctuation-free) code, for MinHash shingles."""

    def word_tokenize(self, text: str) -> list[str]:
        return _CODE_TOKEN.findall(text)


class CodeMinhashSignature(MinhashDedupSignature):
    """datatrove's MinHash signature stage with a code tokenizer (its word tokenizers need spaCy models)."""

    name = "🎯 MinHash stage 1 (code tokens)"

    def __init__(self, output_folder: DataFolderLike, config: MinhashConfig):
        PipelineStep.__init__(self)  # the parent's __init__ would load a spaCy tokenizer
        self.output_folder = get_datafolder(output_folder)
        self.config = config
        self.num_hashes = config.num_buckets * config.hashes_per_bucket
        self._parameters = None
        self._hash_func = create_hash_func(config.hash_config)
        self.language = "code"
        self.word_tokenizer = CodeTokenizer()
        self.skip_existing_sigs = False
