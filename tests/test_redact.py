"""Redaction: no fragment of the key survives, whatever the upstream does with it. Pure."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from sidecar.redact import MIN_FRAGMENT, PLACEHOLDER, REDACTED, clean, escape, label, redact
from sidecar.secret import Secret
from tests.support import FAKE_KEY, FAKE_SECRET

KEY = Secret(FAKE_KEY)


def fragments(secret: str) -> list[str]:
    return [
        secret[i:j] for i in range(len(secret)) for j in range(i + MIN_FRAGMENT, len(secret) + 1)
    ]


def test_the_key_and_its_secret_part_are_removed() -> None:
    cleaned = redact(f"upstream said {FAKE_KEY} and {FAKE_SECRET}", KEY)
    assert FAKE_SECRET not in cleaned
    assert cleaned.count(REDACTED) == 2


def test_every_fragment_of_six_or_more_characters_is_removed() -> None:
    for fragment in fragments(FAKE_SECRET):
        text = f"id=req_{fragment}_x"
        assert fragment not in redact(text, KEY), fragment


def test_redacting_before_cutting_leaves_nothing_at_the_cut() -> None:
    # Truncate-then-redact left the first characters of the secret at the cut.
    for pad in range(0, 40):
        text = "x" * pad + FAKE_KEY + "y" * 500
        kept = clean(text, KEY, limit=30)
        assert not any(f in kept for f in fragments(FAKE_SECRET)), (pad, kept)
        assert len(kept) <= 30


def test_control_characters_newlines_and_surrogates_are_escaped() -> None:
    forged = 'x\n{"event": "readyz check passed"}\r\x1b[31m\u2028\ud800'
    escaped = escape(forged)
    assert "\n" not in escaped
    assert "\r" not in escaped
    assert "\x1b" not in escaped
    assert "\\x0a" in escaped
    assert "\\ud800" in escaped
    assert "\\u2028" in escaped
    escaped.encode("utf-8")  # never raises: a scrape or a log line can always be written


def test_labels_pass_only_if_short_printable_and_unredacted() -> None:
    assert label("Acme Growth") == "Acme Growth"
    assert label("Café") == "Café"
    for bad in ("\ud800", "a\nb", "x" * 200, f"key {REDACTED}", "\x00", escape("a\nb")):
        assert label(bad) == PLACEHOLDER


@given(st.text(max_size=80), st.text(max_size=80), st.integers(min_value=8, max_value=120))
def test_no_fragment_survives_clean_wherever_it_sits(before: str, after: str, limit: int) -> None:
    kept = clean(before + FAKE_KEY + after, KEY, limit=limit)
    assert not any(f in kept for f in fragments(FAKE_SECRET))
    assert len(kept) <= limit
    kept.encode("utf-8")


KEY_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="_")


@given(
    st.text(KEY_CHARS, min_size=MIN_FRAGMENT, max_size=40),
    st.data(),
    st.text(max_size=60),
    st.text(max_size=60),
    st.integers(min_value=8, max_value=200),
)
@example("\\x0aXYZW", None, "\n", "XYZW", 100)  # an escape next to the rest spells the secret
def test_for_any_key_no_fragment_of_its_secret_survives(
    secret: str, data: st.DataObject | None, before: str, after: str, limit: int
) -> None:
    if data is None:  # the explicit example: no fragment inserted, the text spells it
        start = end = 0
    else:
        start = data.draw(st.integers(min_value=0, max_value=len(secret) - MIN_FRAGMENT))
        end = data.draw(st.integers(min_value=start + MIN_FRAGMENT, max_value=len(secret)))
    kept = clean(before + secret[start:end] + after, Secret(f"lp_test_k1_{secret}"), limit=limit)
    assert not any(f in kept for f in fragments(secret))
