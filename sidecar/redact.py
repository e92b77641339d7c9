"""Every string that came from upstream passes through `clean` before it is kept anywhere.

Order matters: control characters are escaped, then the key is removed, and only then is the
text cut. Cutting first would leave the part of the key that straddles the cut (a key cut in
half is still half a key), so nothing here ever sees a cut string.

A fragment of the secret is removed as soon as `MIN_FRAGMENT` characters of it appear in a row:
an upstream that echoes `…secretFA` has leaked as much as one that echoes the whole key.
"""

from __future__ import annotations

import re
import weakref
from typing import Final
from urllib.parse import quote

from .secret import Secret

REDACTED: Final = "[redacted]"
# The shortest run of the secret's characters that counts as a leak. Shorter runs occur in
# ordinary text by chance; six random characters of a key's alphabet do not.
MIN_FRAGMENT: Final = 6
# Upstream strings longer than this are cut (after redaction), with a marker.
DEFAULT_LIMIT: Final = 300
CUT: Final = "…"
# Label values: what a Prometheus label may show. Anything else becomes PLACEHOLDER.
LABEL_LIMIT: Final = 128
PLACEHOLDER: Final = "invalid"

# C0 and C1 controls, DEL, line and paragraph separators, bidi overrides and lone surrogates:
# none may reach a log line, a probe answer or a label unescaped (a newline forges a log line,
# a surrogate cannot be encoded as UTF-8 and breaks every scrape).
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)
_PERCENT: Final = re.compile("%[0-9A-F]{2}")
_LABEL_SAFE: Final = re.compile(r"[\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd]*")


def secret_part(key: Secret) -> str:
    """The part of `lp_<env>_<keyId>_<secret>` that must not leak; the whole key otherwise.

    Everything after the key id, not only what follows the last `_`: nothing says a secret has
    no `_` in it (base64url secrets do), and a key id with one only makes more of it redacted.
    """
    value = key.reveal()
    parts = value.split("_", 3)
    tail = parts[3] if len(parts) == 4 and parts[0] == "lp" else ""
    return tail if len(tail) >= MIN_FRAGMENT else value


def _forms(secret: str) -> set[str]:
    """The secret as it may be echoed: as is, and percent-encoded (upper- and lower-case hex).

    A secret with `+`, `/` or `=` in it (base64) echoed inside a URL is `%2B`, `%2F`, `%3D`
    between short runs, none of them MIN_FRAGMENT long: the plain form alone would miss it.
    """
    encoded = quote(secret, safe="")
    return {secret, encoded, _PERCENT.sub(lambda m: m.group().lower(), encoded)}


# Each key's windows (below), made once for as long as its Secret lives: an upstream answer has
# half a dozen strings to clean against the same key, and a hub call's Secret lives only in flight.
_WINDOWS: Final[weakref.WeakKeyDictionary[Secret, frozenset[str]]] = weakref.WeakKeyDictionary()


def _windows(key: Secret, secret: str) -> frozenset[str]:
    """Every MIN_FRAGMENT-long run of `secret` in each of its forms."""
    windows = _WINDOWS.get(key)
    if windows is None:
        windows = frozenset(
            form[i : i + MIN_FRAGMENT]
            for form in _forms(secret)
            for i in range(len(form) - MIN_FRAGMENT + 1)
        )
        _WINDOWS[key] = windows
    return windows


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def redact(text: str, key: Secret | None) -> str:
    """Replaces the key and every run of `MIN_FRAGMENT`+ characters of its secret part."""
    if key is None or not text:
        return text
    secret = secret_part(key)
    if len(secret) < MIN_FRAGMENT:
        return text.replace(secret, REDACTED) if secret else text
    # Marks every position covered by a window of the secret; any fragment of MIN_FRAGMENT or
    # more characters is covered from end to end, because each of its windows is one of these.
    # str.find per window: a few dozen scans in C, rather than a Python step per character.
    if len(text) < MIN_FRAGMENT:
        return text
    covered = bytearray(len(text))
    found = False
    for window in _windows(key, secret):
        start = text.find(window)
        while start != -1:
            covered[start : start + MIN_FRAGMENT] = b"\x01" * MIN_FRAGMENT
            found = True
            start = text.find(window, start + 1)
    if not found:
        return text
    parts: list[str] = []
    index = 0
    while index < len(text):
        end = index
        while end < len(text) and covered[end] == covered[index]:
            end += 1
        parts.append(REDACTED if covered[index] else text[index:end])
        index = end
    return "".join(parts)


def escape(text: str) -> str:
    """Control characters, separators and lone surrogates as visible `\\xNN` / `\\uNNNN`."""
    if text.isascii() and text.isprintable():
        return text  # none of them is printable ASCII: the usual case, decided in C
    return _UNSAFE.sub(_escape, text)


def clean(text: str, key: Secret | None, *, limit: int = DEFAULT_LIMIT) -> str:
    """The one way an upstream string is kept: escaped, redacted, then cut to `limit`.

    Escaped first: an escape such as `\\x0a` is made of printable characters and, next to
    others, could spell part of a key; a key has no control characters, so escaping never splits
    a fragment of it. Only the first `limit + 3 * len(key) + MIN_FRAGMENT` characters are
    examined: a fragment (plain or percent-encoded) that reaches into the kept part lies wholly
    inside them, and the rest is never kept.
    """
    # Three characters per character of the key, for its percent-encoded form.
    reach = limit + (3 * len(key.reveal()) if key is not None else 0) + MIN_FRAGMENT
    text = redact(escape(text[:reach]), key)
    return text if len(text) <= limit else text[: limit - len(CUT)] + CUT


def label(text: str | None) -> str:
    """A Prometheus label value: `text` if it is short, printable and whole; else PLACEHOLDER.

    A string that `clean` had to change (a redaction, an escape: a backslash) is refused too: a
    label is for telling series apart, and a mangled value would only mislead.
    """
    if text is None:
        return ""
    if (
        len(text) > LABEL_LIMIT
        or REDACTED in text
        or "\\" in text
        or not _LABEL_SAFE.fullmatch(text)
    ):
        return PLACEHOLDER
    return text
