"""Quality levels: the 20 ensemble buckets grouped into the 5 levels that mixtures weight and SDG routes by.

The exact Nemotron-CC bucket->level mapping is unverified (paper-facts §4), so the grouping is configuration.
The default, `DEFAULT_LEVELS`:

    low          buckets 0-4    (25% of the sample's tokens per classifier)
    medium-low   buckets 5-9    (25%)
    medium       buckets 10-13  (20%)
    medium-high  buckets 14-17  (20%)
    high         buckets 18-19  (10%)

`high` = 18-19 is exactly the set the newer Nemotron-CC recipe sends to the four high-quality SDG tasks; the older
Curator tutorial routes buckets > 11 there instead (that is medium's upper half and above). Percentages are per
classifier: the ensemble takes the max over classifiers, so its buckets skew upward and the upper levels hold more
than these shares of the tokens.

Level names double as hive partition values (`subset=medium-high/`), hence lowercase letters, digits and dashes.
English documents that no classifier scored (a run without classifiers) get the level `unscored` (`UNSCORED`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

N_BUCKETS = 20
N_LEVELS = 5
LEVEL_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
UNSCORED = "unscored"  # the level of a document of a scored language when the run has no classifiers

DEFAULT_LEVEL_RANGES: dict[str, str] = {
    "low": "0-4",
    "medium-low": "5-9",
    "medium": "10-13",
    "medium-high": "14-17",
    "high": "18-19",
}


def parse_bucket_set(spec: str | int | list[int]) -> list[int]:
    """'10-13' -> [10, 11, 12, 13]; 7 -> [7]; [1, 2] -> [1, 2] (YAML-friendly ways to name buckets)."""
    if isinstance(spec, bool):
        raise ValueError(f"expected a bucket range like '10-13' or a list of buckets, got {spec!r}")
    if isinstance(spec, int):
        return [spec]
    if isinstance(spec, list):
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in spec):
            raise ValueError(f"expected a list of integer buckets, got {spec!r}")
        return list(spec)
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(spec))
    if not match:
        raise ValueError(f"expected a bucket range like '10-13' or a list of buckets, got {spec!r}")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if last < first:
        raise ValueError(f"range {spec!r} is empty (ends before it starts)")
    return list(range(first, last + 1))


class QualityLevels(BaseModel):
    """Map buckets 0..n_buckets-1 onto exactly 5 named levels, lowest first; every bucket in exactly one level.

    Levels must be ordered: a higher bucket never lands in a lower level, so "level >= medium-high" means
    "bucket >= the first bucket of medium-high".
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    n_buckets: int = Field(default=N_BUCKETS, gt=0)
    levels: dict[str, str | int | list[int]] = Field(
        default_factory=lambda: dict(DEFAULT_LEVEL_RANGES),
        description="level name -> buckets ('0-4', a single bucket, or a list), lowest level first",
    )
    _table: list[str] = PrivateAttr(default_factory=list)

    @field_validator("levels")
    @classmethod
    def _five_ordered_levels_covering_every_bucket_once(
        cls, levels: dict[str, Any], info: ValidationInfo
    ) -> dict[str, Any]:
        n_buckets = info.data.get("n_buckets", N_BUCKETS)
        if len(levels) != N_LEVELS:
            raise ValueError(f"expected {N_LEVELS} levels, got {len(levels)} ({', '.join(levels) or 'none'})")
        owner: dict[int, str] = {}
        previous_top = -1
        for name, spec in levels.items():
            if not LEVEL_NAME.match(name):
                raise ValueError(
                    f"level name {name!r} is not a valid partition value (lowercase letters, digits, dashes)"
                )
            buckets = parse_bucket_set(spec)
            if not buckets:
                raise ValueError(f"level {name!r} has no buckets")
            for bucket in buckets:
                if not 0 <= bucket < n_buckets:
                    raise ValueError(f"level {name!r}: bucket {bucket} is outside 0-{n_buckets - 1}")
                if bucket in owner:
                    raise ValueError(f"bucket {bucket} is in both {owner[bucket]!r} and {name!r}")
                owner[bucket] = name
            if min(buckets) < previous_top:
                raise ValueError(f"level {name!r} has buckets below the level before it (list levels lowest first)")
            previous_top = max(buckets)
        missing = [b for b in range(n_buckets) if b not in owner]
        if missing:
            raise ValueError(
                f"no level holds bucket(s) {_ranges(missing)} (every bucket 0-{n_buckets - 1} needs exactly one)"
            )
        return levels

    @model_validator(mode="after")
    def _bucket_table(self) -> QualityLevels:
        self._table = [""] * self.n_buckets
        for name, spec in self.levels.items():
            for bucket in parse_bucket_set(spec):
                self._table[bucket] = name
        return self

    @property
    def names(self) -> list[str]:
        """Level names, lowest first."""
        return list(self.levels)

    @property
    def bucket_to_level(self) -> list[str]:
        """Index = bucket, value = level name."""
        return list(self._table)

    def level_of(self, bucket: int) -> str:
        if not 0 <= bucket < self.n_buckets:
            raise ValueError(f"bucket {bucket} is outside 0-{self.n_buckets - 1}")
        return self._table[bucket]

    def buckets_of(self, level: str) -> list[int]:
        if level not in self.levels:
            raise ValueError(f"unknown level {level!r}; levels: {', '.join(self.levels)}")
        return sorted(parse_bucket_set(self.levels[level]))


def _ranges(buckets: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts: list[str] = []
    start = prev = buckets[0]
    for b in [*buckets[1:], None]:
        if b is not None and b == prev + 1:
            prev = b
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        if b is not None:
            start = prev = b
    return ", ".join(parts)


DEFAULT_LEVELS = QualityLevels()
