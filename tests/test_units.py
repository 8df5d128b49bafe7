import pytest

from nano2.units import format_count, parse_count


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20T", 20_000_000_000_000),
        ("3.6e12", 3_600_000_000_000),
        ("18.9B", 18_900_000_000),
        ("512M", 512_000_000),
        ("1.1T", 1_100_000_000_000),
        ("812.7B", 812_700_000_000),
        ("6_029_312", 6_029_312),
        ("2k", 2_000),
        (6029312, 6029312),
        (3.6e12, 3_600_000_000_000),
    ],
)
def test_parse_count(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize("bad", ["20X", "", "-5", "1.5", "abc", True, None, "1e-3", "nan", "inf"])
def test_parse_count_rejects(bad):
    with pytest.raises(ValueError):
        parse_count(bad)


def test_format_count():
    assert format_count(20_000_000_000_000) == "20T"
    assert format_count(6_029_312) == "6.03M"
    assert format_count(512) == "512"
