"""The value parsers: durations and HOST:PORT as an operator writes them."""

from __future__ import annotations

import pytest

from sidecar.values import Listen, parse_duration, parse_listen


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("10s", 10), ("2m", 120), ("1h", 3600), ("30", 30), ("1.5", 1.5), ("0", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten", "10d", "1s2", "s", "--1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_parse_listen_accepts_ipv6_and_an_empty_host() -> None:
    assert parse_listen("[::1]:8080") == Listen("::1", 8080)
    assert str(parse_listen("[::1]:8080")) == "[::1]:8080"
    assert parse_listen(":8080") == Listen("0.0.0.0", 8080)
