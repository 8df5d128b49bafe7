"""The text-statistics quality classifier: features computed as documented, a model that round-trips through its
JSON file and is scored by `QualityScorer`, and clear errors for one-class training or a foreign file."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curation.quality.scorer import QualityScorer
from curation.quality.text_features import (
    FEATURE_NAMES,
    TEXT_MODEL_FILENAME,
    TextFeatureModel,
    text_features,
    train_text_feature_model,
)
from nano2.errors import Nano2Error

PROSE = (
    "The committee met on Tuesday to review the results of the spring survey.\n"
    "It covered more than four hundred households in the district and took three months.\n"
)
FURNITURE = "Home\nNews\nContact\nHome\nShare | Tweet | 2024 ©\n"


def test_features_match_a_hand_count():
    features = dict(zip(FEATURE_NAMES, text_features(FURNITURE), strict=True))
    words = FURNITURE.split()  # Home News Contact Home Share | Tweet | 2024 ©
    assert features["log_chars"] == pytest.approx(math.log1p(len(FURNITURE)))
    assert features["mean_word_chars"] == pytest.approx(sum(map(len, words)) / len(words))
    assert features["sentence_end_line_share"] == 0.0
    assert features["repeated_line_share"] == pytest.approx(1 - 4 / 5)  # "Home" twice among 5 lines
    assert features["short_line_share"] == 1.0
    assert features["stop_word_share"] == 0.0
    assert features["digit_share"] == pytest.approx(4 / len(FURNITURE))
    prose = dict(zip(FEATURE_NAMES, text_features(PROSE), strict=True))
    assert prose["sentence_end_line_share"] == 1.0 and prose["stop_word_share"] > 0.2
    assert text_features("") == [0.0] * len(FEATURE_NAMES)


def test_model_separates_prose_from_furniture_and_round_trips(tmp_path):
    texts = [PROSE * k for k in (1, 2, 3)] + [FURNITURE * k for k in (1, 2, 3)]
    model = train_text_feature_model(texts, [1, 1, 1, 0, 0, 0])
    assert model.score(PROSE * 2) > 0.5 > model.score(FURNITURE * 2)
    directory = tmp_path / "web-prose"
    directory.mkdir()
    model.save(directory / TEXT_MODEL_FILENAME)
    loaded = TextFeatureModel.load(directory / TEXT_MODEL_FILENAME)
    assert np.allclose(loaded.weights, model.weights, atol=1e-7)
    scores = QualityScorer([{"name": "web-prose", "path": str(directory)}]).score_many(["", PROSE, FURNITURE])
    assert all(0.0 <= s["web-prose"] <= 1.0 for s in scores)
    assert scores[1]["web-prose"] == pytest.approx(model.score(PROSE), abs=1e-6)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(Nano2Error, match="both"):
        train_text_feature_model([PROSE, PROSE * 2], [1, 1])
    foreign = tmp_path / TEXT_MODEL_FILENAME
    foreign.write_text('{"kind": "something-else"}', encoding="utf-8")
    with pytest.raises(Nano2Error, match="retrain"):
        TextFeatureModel.load(foreign)
    foreign.write_text("not json", encoding="utf-8")
    with pytest.raises(Nano2Error, match="not a readable"):
        TextFeatureModel.load(foreign)
