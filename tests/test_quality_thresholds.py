"""Token-weighted thresholds, buckets, the ensemble max and the level mapping (no models needed)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.quality.levels import DEFAULT_LEVELS, QualityLevels
from curation.quality.thresholds import (
    QualityThresholds,
    assign_bucket,
    assign_buckets,
    bin_token_mass,
    compute_thresholds,
    in_threshold_sample,
)
from nano2.config import load_yaml_model
from nano2.contracts.documents import SUBSET_KEY, TOKEN_COUNT, Meta, quality_entries
from nano2.errors import ConfigError, Nano2Error
from nano2.manifest import ArtifactKind, current_command, write_manifest

N_BINS = 20


def _tie_group_tokens(scores, tokens) -> int:
    """Tokens of the heaviest group of equal scores: the unit a bin boundary cannot split."""
    groups: dict[float, int] = {}
    for s, t in zip(scores, tokens, strict=True):
        groups[float(s)] = groups.get(float(s), 0) + int(t)
    return max(groups.values())


def _assert_equal_token_bins(scores, tokens, cuts, tolerance_tokens):
    assert len(cuts) == N_BINS - 1
    assert all(b >= a for a, b in itertools.pairwise(cuts)), "cut points must be monotone"
    mass = bin_token_mass(scores, tokens, cuts)
    total = sum(int(t) for t in tokens)
    assert sum(mass) == total
    for k, m in enumerate(mass):
        assert abs(m - total / N_BINS) <= tolerance_tokens + 1e-9, (k, m, total / N_BINS, tolerance_tokens)


documents = st.lists(
    st.tuples(st.floats(0, 1, allow_nan=False), st.integers(0, 5000)), min_size=1, max_size=400
).filter(lambda docs: sum(t for _, t in docs) > 0)


@settings(max_examples=150, deadline=None)
@given(documents)
def test_bins_hold_equal_tokens_within_one_document(docs):
    """Distinct scores: each bin's tokens = 1/20 of the sample's +- the largest single document."""
    seen: set[float] = set()
    docs = [(s, t) for s, t in docs if not (s in seen or seen.add(s))]
    if sum(t for _, t in docs) == 0:
        return
    scores, tokens = zip(*docs, strict=True)
    cuts = compute_thresholds(scores, tokens)
    _assert_equal_token_bins(scores, tokens, cuts, max(tokens))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5000001, 0.9, 1.0]), st.integers(0, 3000)),
        min_size=1,
        max_size=300,
    ).filter(lambda docs: sum(t for _, t in docs) > 0)
)
def test_ties_never_split_and_bins_hold_equal_tokens_within_a_tie_group(docs):
    scores, tokens = zip(*docs, strict=True)
    cuts = compute_thresholds(scores, tokens)
    _assert_equal_token_bins(scores, tokens, cuts, _tie_group_tokens(scores, tokens))
    buckets_by_score: dict[float, set[int]] = {}
    for s in scores:
        buckets_by_score.setdefault(s, set()).add(assign_bucket(s, cuts))
    assert all(len(b) == 1 for b in buckets_by_score.values())


@settings(max_examples=100, deadline=None)
@given(documents)
def test_each_sample_document_lands_in_the_bin_of_its_cdf_midpoint(docs):
    """An independent statement of the rule: bucket = floor(20 x midpoint of the doc's tie group on the CDF)."""
    scores, tokens = zip(*docs, strict=True)
    cuts = compute_thresholds(scores, tokens)
    total = sum(tokens)
    for s in set(scores):
        below = sum(t for x, t in docs if x < s)
        group = sum(t for x, t in docs if x == s)
        expected = min(N_BINS - 1, math.floor(N_BINS * (below + group / 2) / total))
        assert assign_bucket(s, cuts) == expected


def test_real_sized_sample_is_close_to_twenty_equal_bins():
    rng = np.random.default_rng(0)
    scores = rng.beta(2, 5, 50_000)
    tokens = rng.integers(50, 3000, 50_000)
    cuts = compute_thresholds(scores, tokens)
    mass = np.array(bin_token_mass(scores, tokens, cuts))
    assert np.abs(mass / tokens.sum() - 1 / N_BINS).max() < 3000 / tokens.sum()


def test_degenerate_samples():
    constant = compute_thresholds([0.3] * 10, [5] * 10)
    assert [assign_bucket(0.3, constant)] * 2 == [10, assign_buckets([0.3], constant)[0]]  # middle, not the top
    assert assign_bucket(0.29, constant) == 0 and assign_bucket(0.31, constant) == 19
    single = compute_thresholds([0.7], [12])
    assert assign_bucket(0.7, single) == 10
    with_zero_token_docs = compute_thresholds([0.1, 0.2, 0.9], [0, 10, 0])
    assert assign_bucket(0.2, with_zero_token_docs) == 10
    with pytest.raises(Nano2Error, match="empty"):
        compute_thresholds([], [])
    with pytest.raises(Nano2Error, match="no tokens"):
        compute_thresholds([0.1, 0.2], [0, 0])
    with pytest.raises(Nano2Error, match="NaN"):
        compute_thresholds([0.1, float("nan")], [1, 1])
    with pytest.raises(Nano2Error, match="non-negative integers"):
        compute_thresholds([0.1, 0.2], [1, -1])
    with pytest.raises(Nano2Error, match="2 scores but 3"):
        compute_thresholds([0.1, 0.2], [1, 2, 3])


def test_assign_bucket_is_bisect_right_and_matches_the_vector_form():
    cuts = [i / 20 for i in range(1, 20)]
    assert assign_bucket(-5.0, cuts) == 0
    assert assign_bucket(0.05, cuts) == 1  # a score equal to a cut point goes up
    assert assign_bucket(0.0499999, cuts) == 0
    assert assign_bucket(1.0, cuts) == 19
    probe = np.random.default_rng(1).random(1000)
    assert list(assign_buckets(probe, cuts)) == [assign_bucket(float(p), cuts) for p in probe]
    with pytest.raises(ValueError, match="NaN"):
        assign_bucket(float("nan"), cuts)


def _fitted() -> QualityThresholds:
    rng = np.random.default_rng(3)
    n = 2000
    tokens = rng.integers(10, 1000, n)
    return QualityThresholds.fit({"a": rng.random(n), "b": rng.beta(5, 2, n)}, tokens)


def test_ensemble_is_the_max_and_level_follows_the_mapping():
    thresholds = _fitted()
    rng = np.random.default_rng(4)
    for a, b in rng.random((200, 2)):
        assignment = thresholds.assign({"a": float(a), "b": float(b), "unrelated": 0.5})
        assert assignment.buckets == {"a": thresholds.bucket_of("a", a), "b": thresholds.bucket_of("b", b)}
        assert assignment.bucket == max(assignment.buckets.values())
        assert assignment.level == DEFAULT_LEVELS.level_of(assignment.bucket)
    with pytest.raises(Nano2Error, match="no score for classifier 'b'"):
        thresholds.assign({"a": 0.5})


def test_thresholds_round_trip_through_json_and_manifests_exactly(tmp_path):
    thresholds = _fitted()
    again = QualityThresholds.load(thresholds.save(tmp_path / "thresholds.json"))
    assert again == thresholds
    assert again.classifiers["a"].cut_points == thresholds.classifiers["a"].cut_points  # floats bit-exact

    run = tmp_path / "run"
    write_manifest(
        run, kind=ArtifactKind.DOCUMENTS, name="web", command=current_command(), extra=thresholds.to_manifest_extra()
    )
    assert QualityThresholds.load(run) == thresholds
    assert QualityThresholds.load(run / "manifest.json") == thresholds

    no_thresholds = tmp_path / "other"
    write_manifest(no_thresholds, kind=ArtifactKind.DOCUMENTS, name="web", command=current_command())
    with pytest.raises(ConfigError, match=r"extra\.quality_thresholds: this manifest records no quality thresholds"):
        QualityThresholds.load(no_thresholds)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"classifiers": {"a": {"cut_points": [0.5, 0.1], "sample_documents": 1}}}))
    with pytest.raises(ConfigError, match=r"broken.json: .*"):
        QualityThresholds.load(broken)
    with pytest.raises(ConfigError, match="not found"):
        QualityThresholds.load(tmp_path / "missing.json")


def test_threshold_sample_membership_is_deterministic_by_id():
    ids = [f"doc-{i}" for i in range(20_000)]
    first = [in_threshold_sample(i, 0.1, seed=5) for i in ids]
    assert first == [in_threshold_sample(i, 0.1, seed=5) for i in ids]
    assert 0.09 < sum(first) / len(ids) < 0.11
    assert first != [in_threshold_sample(i, 0.1, seed=6) for i in ids]
    assert all(in_threshold_sample(i, 1.0) for i in ids[:10])


def test_fit_from_document_files_matches_fit_from_pipeline_documents(tmp_path):
    """The same thresholds from scored datatrove Documents in a pipeline and from the contract files written of
    them (`token_count` column, `metadata.quality` entries)."""
    from datatrove.data import Document

    from curation.documents import DocumentWriter

    rng = np.random.default_rng(8)
    docs = [
        Document(
            text=f"text {i}",
            id=f"d{i}",
            metadata={
                Meta.QUALITY: quality_entries({"a": float(rng.random()), "b-2": float(rng.random())}),
                TOKEN_COUNT: int(rng.integers(1, 500)),
            },
        )
        for i in range(300)
    ]
    expected = QualityThresholds.fit_documents(docs, sample_fraction=0.5, sample_seed=3)
    with DocumentWriter(tmp_path / "scored") as writer:
        for doc in docs:
            doc.metadata[SUBSET_KEY] = "all"
            writer.write(doc, rank=0)
    files = sorted((tmp_path / "scored").rglob("*.parquet"))
    assert [f.relative_to(tmp_path / "scored").as_posix() for f in files] == ["subset=all/00000.parquet"]
    fitted = QualityThresholds.fit_parquet(files, ["a", "b-2"], sample_fraction=0.5, sample_seed=3)
    assert fitted.classifiers == expected.classifiers
    assert fitted.classifiers["a"].sample_documents < 300
    with pytest.raises(Nano2Error, match="cannot read scores"):
        QualityThresholds.fit_parquet(files, ["nope"])


def test_default_levels_cover_every_bucket_once():
    assert DEFAULT_LEVELS.names == ["low", "medium-low", "medium", "medium-high", "high"]
    table = DEFAULT_LEVELS.bucket_to_level
    assert len(table) == 20
    assert [DEFAULT_LEVELS.buckets_of(level) for level in DEFAULT_LEVELS.names] == [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
        [10, 11, 12, 13],
        [14, 15, 16, 17],
        [18, 19],
    ]
    assert DEFAULT_LEVELS.level_of(18) == "high" and DEFAULT_LEVELS.level_of(11) == "medium"


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ({"a": "0-9", "b": "10-13", "c": "14-17", "d": "18-19"}, "expected 5 levels, got 4"),
        ({"low": "0-4", "b": "5-9", "c": "10-13", "d": "14-17", "e": "18"}, r"no level holds bucket\(s\) 19"),
        ({"low": "0-5", "b": "5-9", "c": "10-13", "d": "14-17", "e": "18-19"}, "bucket 5 is in both 'low' and 'b'"),
        ({"low": "0-4", "b": "5-9", "c": "10-13", "d": "14-17", "e": "18-20"}, "bucket 20 is outside 0-19"),
        ({"Low": "0-4", "b": "5-9", "c": "10-13", "d": "14-17", "e": "18-19"}, "not a valid partition value"),
        ({"b": "5-9", "low": "0-4", "c": "10-13", "d": "14-17", "e": "18-19"}, "buckets below the level before"),
        ({"low": "4-0", "b": "5-9", "c": "10-13", "d": "14-17", "e": "18-19"}, "is empty"),
    ],
)
def test_level_mapping_validation(tmp_path, levels, message):
    path = tmp_path / "levels.yaml"
    path.write_text(yaml.safe_dump({"levels": levels}, sort_keys=False))
    with pytest.raises(ConfigError, match=message) as err:
        load_yaml_model(path, QualityLevels)
    assert str(err.value).startswith(f"{path}: levels: ")


def test_custom_level_mapping_with_lists_and_single_buckets():
    levels = QualityLevels(levels={"l0": "0-11", "l1": [12, 13, 14], "l2": "15-17", "l3": 18, "l4": [19]})
    assert levels.level_of(11) == "l0" and levels.level_of(12) == "l1" and levels.level_of(19) == "l4"
    thresholds = _fitted().model_copy(update={"levels": levels})
    assert thresholds.assign({"a": 2.0, "b": 2.0}).level == "l4"
