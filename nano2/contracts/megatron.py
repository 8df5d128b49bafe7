"""The token-shard contract: Megatron-LM's indexed dataset format (.bin + .idx), its one reader and writer.

train/ writes shards (tokenize) and reads them (the mixture loader), mixtures/ counts their tokens (Megatron blend
exports), compress/ draws calibration windows from them: all through this module, which sits on the ground floor so
that none of them imports another for it.

A shard is a pair `PREFIX.bin` (token ids back to back) and `PREFIX.idx`, laid out exactly as Megatron-Core's
`_IndexWriter` writes it, so the same shards serve Megatron-LM at scale (`--data-path w PREFIX`):

    9 bytes   magic b"MMIDIDX\\x00\\x00"
    8 bytes   version, uint64 little-endian = 1
    1 byte    dtype code of the tokens in .bin (8 = uint16 when the vocab is < 65,500, 4 = int32 otherwise)
    8 bytes   sequence count S, uint64
    8 bytes   document count D + 1, uint64
    S x int32 sequence lengths (tokens)
    S x int64 sequence pointers (byte offsets into .bin)
    (D + 1) x int64 document indices: document i is sequences [idx[i], idx[i + 1])

We write one sequence per document (each ending in EOS), as Megatron's `preprocess_data.py --append-eod` does.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from nano2.errors import Nano2Error

INDEX_MAGIC = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
HEADER_BYTES = len(INDEX_MAGIC) + 8 + 1 + 8 + 8
DTYPE_CODES: dict[int, type[np.generic]] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}
CODE_OF_DTYPE = {np.dtype(t): c for c, t in DTYPE_CODES.items()}
TOKEN_DTYPES = (np.uint16, np.int32)


def token_dtype_for_vocab(vocab_size: int) -> type[np.generic]:
    """Megatron's rule: uint16 tokens for vocabularies under 65,500, int32 otherwise."""
    return np.uint16 if vocab_size < 65500 else np.int32


def _read_header(fh, idx_path: Path) -> tuple[np.dtype, int, int]:
    header = fh.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES or header[: len(INDEX_MAGIC)] != INDEX_MAGIC:
        raise Nano2Error(f"{idx_path}: not a Megatron index file (bad magic)")
    version, code, sequences, documents = struct.unpack("<QBQQ", header[len(INDEX_MAGIC) :])
    if version != INDEX_VERSION:
        raise Nano2Error(f"{idx_path}: unsupported index version {version} (expected {INDEX_VERSION})")
    if code not in DTYPE_CODES:
        raise Nano2Error(f"{idx_path}: unknown token dtype code {code}")
    return np.dtype(DTYPE_CODES[code]), sequences, documents


def read_index_tokens(idx_path: str | Path) -> int:
    """Token count of a shard from its .idx alone (header + sequence lengths): what a mixture plan counts."""
    idx_path = Path(idx_path)
    with open(idx_path, "rb") as fh:
        _, sequences, _ = _read_header(fh, idx_path)
        lengths = np.fromfile(fh, dtype=np.int32, count=sequences)
    if lengths.size != sequences:
        raise Nano2Error(f"{idx_path}: truncated index ({lengths.size} of {sequences} sequence lengths)")
    return int(lengths.sum(dtype=np.int64))


@dataclass(frozen=True)
class IndexedShard:
    """One .bin/.idx pair, read lazily: the index in memory, the tokens memory-mapped."""

    prefix: Path
    dtype: np.dtype
    sequence_lengths: np.ndarray  # int32
    sequence_pointers: np.ndarray  # int64, bytes
    document_indices: np.ndarray  # int64, D + 1 entries

    @property
    def bin_path(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".bin")

    @property
    def idx_path(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".idx")

    @property
    def tokens(self) -> int:
        return int(self.sequence_lengths.sum(dtype=np.int64))

    @property
    def documents(self) -> int:
        return len(self.document_indices) - 1

    @cached_property
    def data(self) -> np.ndarray:
        """All tokens of the shard as a read-only memory map (empty shards give an empty array)."""
        if self.tokens == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.bin_path, dtype=self.dtype, mode="r")

    def document_lengths(self) -> np.ndarray:
        """Tokens per document (a document is a run of consecutive sequences)."""
        cumulative = np.concatenate([[0], np.cumsum(self.sequence_lengths, dtype=np.int64)])
        return cumulative[self.document_indices[1:]] - cumulative[self.document_indices[:-1]]

    def document_starts(self) -> np.ndarray:
        """Token offset in .bin of each document's first token."""
        end = np.asarray([self.tokens * self.dtype.itemsize], dtype=np.int64)
        pointers = np.concatenate([self.sequence_pointers, end])  # a document with no sequence starts at the end
        return pointers[self.document_indices[:-1]] // self.dtype.itemsize

    def document(self, i: int) -> np.ndarray:
        start = int(self.document_starts()[i])
        return np.asarray(self.data[start : start + int(self.document_lengths()[i])])


def read_index(prefix_or_path: str | Path) -> IndexedShard:
    """Open a shard by prefix (or by its .idx/.bin path); checks the index against the size of .bin."""
    path = Path(prefix_or_path)
    prefix = path.with_suffix("") if path.suffix in (".idx", ".bin") else path
    idx_path = prefix.with_name(prefix.name + ".idx")
    bin_path = prefix.with_name(prefix.name + ".bin")
    if not idx_path.exists():
        raise Nano2Error(f"{idx_path}: index file not found")
    if not bin_path.exists():
        raise Nano2Error(f"{bin_path}: data file not found (its .idx exists)")
    with open(idx_path, "rb") as fh:
        dtype, sequences, documents = _read_header(fh, idx_path)
        lengths = np.fromfile(fh, dtype=np.int32, count=sequences)
        pointers = np.fromfile(fh, dtype=np.int64, count=sequences)
        doc_idx = np.fromfile(fh, dtype=np.int64, count=documents)
    if lengths.size != sequences or pointers.size != sequences or doc_idx.size != documents:
        raise Nano2Error(f"{idx_path}: truncated index")
    expected = int(lengths.sum(dtype=np.int64)) * dtype.itemsize
    actual = bin_path.stat().st_size
    if actual != expected:
        raise Nano2Error(f"{bin_path}: holds {actual:,} bytes but its index describes {expected:,}")
    return IndexedShard(prefix, dtype, lengths, pointers, doc_idx)


class IndexedShardWriter:
    """Write documents to PREFIX.bin/.idx; the pair appears atomically on `close()` (temp files renamed)."""

    def __init__(self, prefix: str | Path, dtype: type[np.generic] = np.uint16):
        if np.dtype(dtype) not in {np.dtype(t) for t in TOKEN_DTYPES}:
            raise Nano2Error(f"token dtype must be uint16 or int32, got {np.dtype(dtype)}")
        self.prefix = Path(prefix)
        self.dtype = np.dtype(dtype)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._bin_tmp = self.prefix.with_name(f".{self.prefix.name}.bin.tmp")
        self._bin = open(self._bin_tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self.lengths: list[int] = []
        self._limit = np.iinfo(self.dtype).max

    def add_document(self, tokens: np.ndarray | list[int]) -> None:
        array = np.asarray(tokens)
        if array.size and (array.min() < 0 or array.max() > self._limit):
            raise Nano2Error(f"{self.prefix}: token id out of range for {self.dtype} (max {self._limit})")
        self._bin.write(array.astype(self.dtype, copy=False).tobytes(order="C"))
        self.lengths.append(int(array.size))

    @property
    def tokens(self) -> int:
        return sum(self.lengths)

    def close(self) -> IndexedShard:
        self._bin.close()
        lengths = np.asarray(self.lengths, dtype=np.int32)
        pointers = np.zeros(len(lengths), dtype=np.int64)
        if len(lengths) > 1:
            pointers[1:] = np.cumsum(lengths[:-1], dtype=np.int64) * self.dtype.itemsize
        doc_idx = np.arange(len(lengths) + 1, dtype=np.int64)
        idx_tmp = self.prefix.with_name(f".{self.prefix.name}.idx.tmp")
        with open(idx_tmp, "wb") as fh:
            fh.write(INDEX_MAGIC)
            fh.write(struct.pack("<QBQQ", INDEX_VERSION, CODE_OF_DTYPE[self.dtype], len(lengths), len(doc_idx)))
            fh.write(lengths.tobytes(order="C"))
            fh.write(pointers.tobytes(order="C"))
            fh.write(doc_idx.tobytes(order="C"))
        os.replace(self._bin_tmp, self.prefix.with_name(self.prefix.name + ".bin"))
        os.replace(idx_tmp, self.prefix.with_name(self.prefix.name + ".idx"))
        return read_index(self.prefix)

    def abort(self) -> None:
        self._bin.close()
        self._bin_tmp.unlink(missing_ok=True)


def find_shards(directory: str | Path) -> list[IndexedShard]:
    """Every .idx/.bin pair under a directory, sorted by path (the order a source's documents are numbered in)."""
    directory = Path(directory)
    return [read_index(idx) for idx in sorted(directory.rglob("*.idx")) if not idx.name.startswith(".")]
