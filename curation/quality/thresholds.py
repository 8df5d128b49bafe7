"""Token-weighted percentile thresholds: float classifier scores -> integer buckets 0-19, fixed once, applied anywhere.

Nemotron-CC turns each classifier's score into a bucket with cut points that split a sample's *token-weighted*
score distribution into 20 equal-token bins, then takes the per-document max over classifiers. Here:

* `compute_thresholds(scores, token_counts)` returns the 19 cut points. Every distinct score value (a "tie group")
  owns the slice of the token-weighted CDF its documents cover; the group goes to the bin holding the midpoint of
  that slice, and cut point k is the smallest score whose group is in bin >= k. Without ties this is Nemotron's
  weighted inverted-CDF up to which bin gets the one document straddling a cut; with ties a group is never split
  (the same score must always give the same bucket), so bins are equal-token within the heaviest group's tokens.
  Degenerate samples: a constant score lands in the middle bin (not the top one, so a classifier with no signal
  cannot lift the ensemble max); bins no sample score reaches stay empty, their cut points sitting just above the
  sample maximum. No score is ever NaN; an empty or token-less sample is an error.
* `assign_bucket(score, cut_points)` = number of cut points <= score (bisect right, as `np.digitize`), so a score
  equal to a cut point goes up. Pure function of two floats and a list stored as JSON (floats round-trip exactly):
  the same document gets the same bucket on every worker and every rerun.
* `QualityThresholds` holds the cut points of every classifier plus the bucket->level mapping, serialises to JSON
  for the run manifest's `extra["quality_thresholds"]`, and assigns (per-classifier buckets, ensemble max, level).
* Corpus-wide (Nemotron-CC's buckets come from percentiles over the whole corpus, not one run's sample):
  `fit_corpus_thresholds(score_files, ...)` reads the per-document score shards every scoring task writes
  (`SCORE_COLUMNS`: id, token count, one `score:<classifier>` column each) with polars, lazily and streaming. Each
  classifier's scores are grouped into cells of `resolution` (1e-6: a fastText probability has ~7 significant
  digits) holding (the cell's smallest score, its tokens); the cut points are `compute_thresholds` over those cells.
  Memory is one row per occupied cell (at most 1/resolution per unit of score range), independent of the number of
  documents. Every member of a cell is >= the cell's smallest score and < the next cell's, so a cell is a tie group
  and every document of the corpus lands in the bin of its cell. The result is a versioned artifact
  (`THRESHOLDS_VERSION`, `source`: documents, tokens, shards, resolution) that a later run can reuse, so two crawl
  segments are levelled on one scale. Nothing to fit (no scored document, no tokens) is an explicit outcome,
  `UnfittedThresholds` with its reason: the run levels its documents `unscored`, it does not crash.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from curation.quality.levels import DEFAULT_LEVELS, N_BUCKETS, QualityLevels
from nano2.contracts.documents import ID, METADATA, TOKEN_COUNT, Meta, check_document_schema
from nano2.errors import ConfigError, Nano2Error

MANIFEST_EXTRA_KEY = "quality_thresholds"
THRESHOLDS_VERSION = 1  # bump when the meaning of a saved thresholds file changes
SCORE_RESOLUTION = 1e-6
SCORE_COLUMN_PREFIX = "score:"
SCORE_ID, SCORE_TOKENS, SCORE_LANGUAGE = "id", "token_count", "language"


def score_column(classifier: str) -> str:
    """Column of a classifier's score in a score shard."""
    return f"{SCORE_COLUMN_PREFIX}{classifier}"


def entry_scores(entries: Iterable[Mapping[str, Any]] | None) -> dict[str, float]:
    """{classifier: score} from a document's `quality` metadata (a list of {classifier, score, bucket})."""
    return {str(entry["classifier"]): float(entry["score"]) for entry in entries or ()}


def _validated_arrays(scores: Any, token_counts: Any) -> tuple[np.ndarray, np.ndarray]:
    scores_arr = np.asarray(scores, dtype=np.float64).ravel()
    tokens_raw = np.asarray(token_counts).ravel()
    if scores_arr.shape != tokens_raw.shape:
        raise Nano2Error(f"thresholds: {scores_arr.size} scores but {tokens_raw.size} token counts")
    if scores_arr.size == 0:
        raise Nano2Error("thresholds: the sample is empty; need at least one scored document")
    if not np.isfinite(scores_arr).all():
        raise Nano2Error(f"thresholds: {int((~np.isfinite(scores_arr)).sum())} scores are NaN or infinite")
    tokens_float = tokens_raw.astype(np.float64)
    if (tokens_float < 0).any() or (tokens_float != np.floor(tokens_float)).any():
        raise Nano2Error("thresholds: token counts must be non-negative integers")
    tokens_arr = tokens_raw.astype(np.int64)
    if int(tokens_arr.sum()) <= 0:
        raise Nano2Error("thresholds: the sample has no tokens (every token count is 0)")
    return scores_arr, tokens_arr


def _tie_groups(scores: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct score values (ascending) and the tokens each holds."""
    order = np.argsort(scores, kind="stable")
    values, starts = np.unique(scores[order], return_index=True)
    return values, np.add.reduceat(tokens[order], starts)


def compute_thresholds(scores: Any, token_counts: Any, n_bins: int = N_BUCKETS) -> list[float]:
    """The n_bins-1 non-decreasing cut points that split the token-weighted score distribution into equal bins."""
    if n_bins < 2:
        raise Nano2Error(f"thresholds: n_bins must be at least 2, got {n_bins}")
    scores_arr, tokens_arr = _validated_arrays(scores, token_counts)
    values, group_tokens = _tie_groups(scores_arr, tokens_arr)
    total = int(group_tokens.sum())
    cum_start = np.cumsum(group_tokens) - group_tokens
    # bin of a group = floor(n_bins * CDF midpoint), in exact integer arithmetic (no float drift at bin edges)
    group_bin = np.minimum((n_bins * (2 * cum_start + group_tokens)) // (2 * total), n_bins - 1)
    above_max = float(np.nextafter(values[-1], np.inf))
    cuts = []
    for k in range(1, n_bins):
        first = int(np.searchsorted(group_bin, k, side="left"))
        cuts.append(float(values[first]) if first < len(values) else above_max)
    return cuts


def assign_bucket(score: float, thresholds: Sequence[float]) -> int:
    """Bucket of one score: how many cut points are <= score (0..len(thresholds))."""
    if math.isnan(score):
        raise ValueError("cannot bucket a NaN score")
    return bisect.bisect_right(thresholds, score)


def assign_buckets(scores: Any, thresholds: Sequence[float]) -> np.ndarray:
    """Vectorised `assign_bucket` (same rule: searchsorted right)."""
    scores_arr = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores_arr).any():
        raise ValueError("cannot bucket a NaN score")
    return np.searchsorted(np.asarray(thresholds, dtype=np.float64), scores_arr, side="right")


def bin_token_mass(scores: Any, token_counts: Any, thresholds: Sequence[float]) -> list[int]:
    """Tokens that land in each bin under `thresholds` (for audits and for testing equal-token bins)."""
    scores_arr, tokens_arr = _validated_arrays(scores, token_counts)
    bins = assign_buckets(scores_arr, thresholds)
    return [int(v) for v in np.bincount(bins, weights=tokens_arr, minlength=len(thresholds) + 1).astype(np.int64)]


def in_threshold_sample(key: str, fraction: float, seed: int = 0) -> bool:
    """Deterministic sample membership by document id (same answer on every worker, unlike `random`)."""
    if fraction >= 1:
        return True
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


def read_threshold_sample(
    files: Sequence[str | Path],
    classifiers: Sequence[str],
    *,
    sample_fraction: float = 1.0,
    sample_seed: int = 0,
) -> tuple[list[str], dict[str, list[float]], list[int]]:
    """(ids, scores per classifier, token counts) of the sampled documents of scored document files (the
    document contract: `token_count` column, `metadata.quality` entries)."""
    import duckdb
    import pyarrow.parquet as pq

    if not files:
        raise Nano2Error("thresholds: no Parquet files given")
    missing = [str(f) for f in files if not Path(f).exists()]
    if missing:
        raise Nano2Error(f"thresholds: Parquet file not found: {missing[0]}")
    for f in files:
        check_document_schema(pq.read_schema(f), str(f))
    file_list = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
    rows = duckdb.sql(
        f'SELECT {ID}, {TOKEN_COUNT}, {METADATA}."{Meta.QUALITY}" FROM read_parquet({file_list})'
    ).fetchall()
    ids: list[str] = []
    tokens: list[int] = []
    scores: dict[str, list[float]] = {name: [] for name in classifiers}
    for doc_id, token_count, entries in rows:
        if not in_threshold_sample(doc_id, sample_fraction, sample_seed):
            continue
        doc_scores = entry_scores(entries)
        absent = [name for name in classifiers if name not in doc_scores]
        if absent:
            raise Nano2Error(f"thresholds: cannot read scores of {list(classifiers)}: document {doc_id} has none "
                             f"for {', '.join(absent)}")  # fmt: skip
        if token_count is None:
            raise Nano2Error(f"thresholds: document {doc_id} has no token count")
        ids.append(doc_id)
        tokens.append(int(token_count))
        for name in classifiers:
            scores[name].append(doc_scores[name])
    return ids, scores, tokens


class ClassifierThresholds(BaseModel):
    """One classifier's cut points and what the sample they came from looked like."""

    model_config = ConfigDict(extra="forbid")
    cut_points: list[float]
    sample_documents: int = Field(ge=0)
    sample_tokens: int = Field(ge=0)
    bin_tokens: list[int] = Field(default_factory=list, description="sample tokens per bin")
    min_score: float | None = None
    max_score: float | None = None

    @model_validator(mode="after")
    def _sorted_and_finite(self) -> ClassifierThresholds:
        if not all(math.isfinite(c) for c in self.cut_points):
            raise ValueError("cut points must be finite numbers")
        if any(b < a for a, b in itertools.pairwise(self.cut_points)):
            raise ValueError("cut points must be non-decreasing")
        return self


class ThresholdsSource(BaseModel):
    """What a corpus-wide fit read: how many score shards, documents and tokens, at what score resolution."""

    model_config = ConfigDict(extra="forbid")
    shards: int = Field(ge=0)
    documents: int = Field(ge=0)
    tokens: int = Field(ge=0)
    resolution: float = Field(gt=0)
    dropped: dict[str, int] = Field(default_factory=dict, description="score rows left out, by reason")


class UnfittedThresholds(BaseModel):
    """The named outcome of a fit with nothing to fit: the run levels its scored-language documents `unscored`."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["unfitted"] = "unfitted"
    version: int = Field(default=THRESHOLDS_VERSION, ge=1, le=THRESHOLDS_VERSION)
    reason: str
    source: ThresholdsSource | None = None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path


class QualityAssignment(NamedTuple):
    buckets: dict[str, int]
    bucket: int
    level: str


class QualityThresholds(BaseModel):
    """Cut points for every classifier of the ensemble plus the bucket->level mapping: all a worker needs."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["fitted"] = "fitted"
    version: int = Field(default=THRESHOLDS_VERSION, ge=1, le=THRESHOLDS_VERSION)
    n_bins: int = Field(default=N_BUCKETS, ge=2)
    classifiers: dict[str, ClassifierThresholds]
    source: ThresholdsSource | None = Field(default=None, description="what a corpus-wide fit read")
    levels: QualityLevels = Field(default_factory=lambda: DEFAULT_LEVELS)
    sample_fraction: float | None = Field(default=None, description="share of documents the sample kept")
    sample_seed: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> QualityThresholds:
        if not self.classifiers:
            raise ValueError("at least one classifier is needed")
        for name, thresholds in self.classifiers.items():
            if len(thresholds.cut_points) != self.n_bins - 1:
                raise ValueError(
                    f"classifier {name!r}: {len(thresholds.cut_points)} cut points, expected {self.n_bins - 1}"
                )
        if self.levels.n_buckets != self.n_bins:
            raise ValueError(f"levels cover {self.levels.n_buckets} buckets but there are {self.n_bins} bins")
        return self

    # --- fitting -------------------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        scores: Mapping[str, Any],
        token_counts: Any,
        *,
        levels: QualityLevels | None = None,
        n_bins: int = N_BUCKETS,
        sample_fraction: float | None = None,
        sample_seed: int | None = None,
    ) -> QualityThresholds:
        """Cut points per classifier from one sample: `scores[name][i]` and `token_counts[i]` describe document i."""
        classifiers = {}
        for name, values in scores.items():
            scores_arr, tokens_arr = _validated_arrays(values, token_counts)
            cuts = compute_thresholds(scores_arr, tokens_arr, n_bins)
            classifiers[name] = ClassifierThresholds(
                cut_points=cuts,
                sample_documents=int(scores_arr.size),
                sample_tokens=int(tokens_arr.sum()),
                bin_tokens=bin_token_mass(scores_arr, tokens_arr, cuts),
                min_score=float(scores_arr.min()),
                max_score=float(scores_arr.max()),
            )
        return cls(
            n_bins=n_bins,
            classifiers=classifiers,
            levels=levels or DEFAULT_LEVELS,
            sample_fraction=sample_fraction,
            sample_seed=sample_seed,
        )

    @classmethod
    def fit_documents(
        cls,
        documents: Iterable[Any],
        *,
        classifiers: Sequence[str] | None = None,
        levels: QualityLevels | None = None,
        n_bins: int = N_BUCKETS,
        sample_fraction: float = 1.0,
        sample_seed: int = 0,
    ) -> QualityThresholds:
        """Fit from scored datatrove Documents in a pipeline (metadata `quality` entries and datatrove's
        `token_count`), sampled by id."""
        scores: dict[str, list[float]] = {}
        tokens: list[int] = []
        names = list(classifiers) if classifiers is not None else None
        for doc in documents:
            if not in_threshold_sample(str(doc.id), sample_fraction, sample_seed):
                continue
            if Meta.QUALITY not in doc.metadata:
                raise Nano2Error(f"document {doc.id}: no metadata[{Meta.QUALITY.value!r}]; run QualityScores first")
            if TOKEN_COUNT not in doc.metadata:
                raise Nano2Error(f"document {doc.id}: no metadata[{TOKEN_COUNT!r}]; count tokens first")
            doc_scores = entry_scores(doc.metadata[Meta.QUALITY])
            if names is None:
                names = sorted(doc_scores)
            for name in names:
                if name not in doc_scores:
                    raise Nano2Error(f"document {doc.id}: no score for classifier {name!r}")
                scores.setdefault(name, []).append(doc_scores[name])
            tokens.append(int(doc.metadata[TOKEN_COUNT]))
        if not tokens:
            raise Nano2Error("thresholds: no document fell into the sample")
        return cls.fit(
            scores,
            tokens,
            levels=levels,
            n_bins=n_bins,
            sample_fraction=sample_fraction,
            sample_seed=sample_seed,
        )

    @classmethod
    def fit_parquet(
        cls,
        files: Sequence[str | Path],
        classifiers: Sequence[str],
        *,
        levels: QualityLevels | None = None,
        n_bins: int = N_BUCKETS,
        sample_fraction: float = 1.0,
        sample_seed: int = 0,
    ) -> QualityThresholds:
        """Fit from scored document files (the document contract), e.g. to refit on a curated folder."""
        ids, scores, tokens = read_threshold_sample(
            files, classifiers, sample_fraction=sample_fraction, sample_seed=sample_seed
        )
        if not ids:
            raise Nano2Error(f"thresholds: no document of {len(files)} Parquet file(s) fell into the sample")
        return cls.fit(
            scores, tokens, levels=levels, n_bins=n_bins, sample_fraction=sample_fraction, sample_seed=sample_seed
        )

    # --- applying ------------------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self.classifiers)

    def bucket_of(self, classifier: str, score: float) -> int:
        return assign_bucket(score, self.classifiers[classifier].cut_points)

    def assign(self, scores: Mapping[str, float]) -> QualityAssignment:
        """Per-classifier buckets, the ensemble bucket (their max) and its level."""
        buckets = {}
        for name, thresholds in self.classifiers.items():
            if name not in scores:
                raise Nano2Error(
                    f"no score for classifier {name!r} (scores given: {', '.join(sorted(scores)) or 'none'})"
                )
            buckets[name] = assign_bucket(float(scores[name]), thresholds.cut_points)
        bucket = max(buckets.values())
        return QualityAssignment(buckets, bucket, self.levels.level_of(bucket))

    # --- storage -------------------------------------------------------------------------------------------

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    def to_manifest_extra(self) -> dict[str, Any]:
        """What a run stores in its manifest's `extra` so that any later worker can re-apply the same buckets."""
        return {MANIFEST_EXTRA_KEY: self.model_dump(mode="json")}

    @classmethod
    def load(cls, path: str | Path) -> QualityThresholds:
        """From a thresholds JSON file, a manifest.json, or an artifact directory whose manifest carries them."""
        from nano2.config import validate_model
        from nano2.manifest import MANIFEST_NAME

        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.exists():
            raise ConfigError(path, None, "quality thresholds not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(path, f"line {exc.lineno}", f"malformed JSON: {exc.msg}") from None
        if isinstance(data, dict) and "extra" in data and "producer" in data:
            if MANIFEST_EXTRA_KEY not in (data.get("extra") or {}):
                raise ConfigError(path, f"extra.{MANIFEST_EXTRA_KEY}", "this manifest records no quality thresholds")
            data = data["extra"][MANIFEST_EXTRA_KEY]
        if isinstance(data, dict) and data.get("status") == "unfitted":
            reason = data.get("reason", "no reason recorded")
            raise ConfigError(path, "status", f"these thresholds were never fitted ({reason}); fit them on scored data")
        return validate_model(data, cls, path)


def load_thresholds_artifact(path: str | Path) -> QualityThresholds | UnfittedThresholds:
    """A thresholds file as saved by a run: fitted thresholds, or the reason there are none."""
    from nano2.config import validate_model

    path = Path(path)
    if not path.is_dir() and path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(path, f"line {exc.lineno}", f"malformed JSON: {exc.msg}") from None
        if isinstance(data, dict) and data.get("status") == "unfitted":
            return validate_model(data, UnfittedThresholds, path)
    return QualityThresholds.load(path)


MAX_SCORE_CELLS = 1 << 22
"""Cells of the dense per-classifier grid at most (two arrays of 8 bytes each: 64 MiB); a wider score range gets a
coarser resolution (recorded in the artifact's `source.resolution`)."""


def _finite(classifier: str) -> Any:
    import polars as pl

    score = pl.col(score_column(classifier))
    return score.is_not_null() & score.is_finite()


def _shard_totals(path: str, classifiers: Sequence[str], resolution: float) -> dict[str, Any]:
    """Documents, tokens, drops and per-classifier score range of one score shard (one streaming pass)."""
    import polars as pl

    aggregates = {
        "documents": pl.len(),
        "tokens": pl.col(SCORE_TOKENS).clip(lower_bound=0).sum(),
        "no_token_count": pl.col(SCORE_TOKENS).is_null().sum(),
    }
    for c in classifiers:
        score = pl.col(score_column(c))
        aggregates[f"non-finite {c} score"] = (~_finite(c)).sum()
        aggregates[f"min:{c}"] = score.filter(_finite(c)).min()
        aggregates[f"max:{c}"] = score.filter(_finite(c)).max()
    return pl.scan_parquet(path).select(**aggregates).collect(engine="streaming").row(0, named=True)


def _score_cells(files: Sequence[str], classifier: str, low: float, high: float, resolution: float) -> tuple[
    np.ndarray, np.ndarray, float
]:  # fmt: skip
    """(smallest score, tokens) of every occupied score cell of one classifier, ascending, and the resolution used.

    One shard at a time: polars groups the shard's scores into cells (streaming), and the groups are added into a
    dense grid spanning the corpus's score range, so memory is one shard's groups plus the grid, whatever the
    number of shards."""
    import polars as pl

    while math.floor(high / resolution) - math.floor(low / resolution) + 1 > MAX_SCORE_CELLS:
        resolution *= 2
    first = math.floor(low / resolution)
    size = math.floor(high / resolution) - first + 1
    tokens = np.zeros(size, dtype=np.int64)
    values = np.full(size, np.inf)
    score = pl.col(score_column(classifier))
    for path in files:
        groups = (
            pl.scan_parquet(path)
            .filter(_finite(classifier) & pl.col(SCORE_TOKENS).is_not_null())
            .group_by((score / resolution).floor().cast(pl.Int64).alias("cell"))
            .agg(score.min().alias("value"), pl.col(SCORE_TOKENS).clip(lower_bound=0).sum().alias("tokens"))
            .collect(engine="streaming")
        )
        cells = np.clip(groups["cell"].to_numpy() - first, 0, size - 1)  # float edge: a score rounding past a bound
        tokens[cells] += groups["tokens"].to_numpy().astype(np.int64)
        values[cells] = np.minimum(values[cells], groups["value"].to_numpy())
    occupied = np.isfinite(values)
    return values[occupied], tokens[occupied], resolution


def fit_corpus_thresholds(
    score_files: Sequence[str | Path],
    classifiers: Sequence[str],
    *,
    levels: QualityLevels | None = None,
    n_bins: int = N_BUCKETS,
    resolution: float = SCORE_RESOLUTION,
) -> QualityThresholds | UnfittedThresholds:
    """Token-weighted cut points over every score shard (see the module docstring), or why there are none."""
    import polars as pl

    files = [str(f) for f in score_files]
    if not files:
        return UnfittedThresholds(reason="no score shards: no document of a scored language reached scoring")
    for path in files:
        names = pl.scan_parquet(path).collect_schema().names()
        absent = [c for c in classifiers if score_column(c) not in names]
        if absent:
            raise Nano2Error(f"thresholds: score shard {path} has no scores of classifier(s) {', '.join(absent)}")
    shards = [_shard_totals(path, classifiers, resolution) for path in files]
    counters = [k for k in shards[0] if k not in ("documents", "tokens") and ":" not in k]
    dropped = {k: n for k in counters if (n := sum(int(s[k]) for s in shards))}
    documents, tokens_total = sum(int(s["documents"]) for s in shards), sum(int(s["tokens"] or 0) for s in shards)
    source = ThresholdsSource(shards=len(files), documents=documents, tokens=tokens_total, resolution=resolution,
                              dropped=dropped)  # fmt: skip
    if documents == 0:
        return UnfittedThresholds(reason="no document of a scored language survived the filters", source=source)
    fitted = {}
    for name in classifiers:
        lows = [s[f"min:{name}"] for s in shards if s[f"min:{name}"] is not None]
        highs = [s[f"max:{name}"] for s in shards if s[f"max:{name}"] is not None]
        if not lows:
            return UnfittedThresholds(reason=f"no document has a finite {name!r} score", source=source)
        values, tokens, used = _score_cells(files, name, min(lows), max(highs), resolution)
        if int(tokens.sum()) <= 0:
            return UnfittedThresholds(reason=f"the documents scored by {name!r} hold no tokens", source=source)
        source.resolution = max(source.resolution, used)
        cuts = compute_thresholds(values, tokens, n_bins)
        fitted[name] = ClassifierThresholds(
            cut_points=cuts, sample_documents=documents, sample_tokens=int(tokens.sum()),
            bin_tokens=bin_token_mass(values, tokens, cuts), min_score=float(min(lows)), max_score=float(max(highs)),
        )  # fmt: skip
    return QualityThresholds(n_bins=n_bins, classifiers=fitted, levels=levels or DEFAULT_LEVELS, source=source)
