"""The counting tokenizer of synthesis: token counts of written rows, input limits, chunks and truncation budgets.

It is the run's *counting tokenizer* (`nano2.contracts.tokens`): the same `default` BPE curation counts with unless
the config names another `tokenizer.json`, and every manifest synthesis writes names it in `stats.tokenizer`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from curation.tokens import counting_tokenizer_id, resolve_tokenizer
from nano2.errors import Nano2Error


class TokenCounter:
    """A `tokenizers` tokenizer for counting, splitting and cutting text by tokens."""

    def __init__(self, name_or_path: str = "default"):
        from tokenizers import Tokenizer

        path = resolve_tokenizer(name_or_path)
        try:
            self.tokenizer = Tokenizer.from_file(path)
        except Exception as exc:  # the Rust side raises a bare Exception for a missing or bad file
            raise Nano2Error(f"tokenizer {name_or_path!r}: cannot load {path} ({exc})") from None
        self.name = name_or_path

    @functools.cached_property
    def id(self) -> str:
        """What manifests record as `stats.tokenizer` (the same id curation gives this tokenizer)."""
        return counting_tokenizer_id(self.name)

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids) if text else 0

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def char_offsets(self, text: str) -> list[tuple[int, int]]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).offsets)


@functools.cache
def token_counter(name_or_path: str = "default") -> TokenCounter:
    return TokenCounter(name_or_path)
