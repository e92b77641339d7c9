"""The wire forms a proxy may add to a whoami body, undone and bounded. Pure.

Some proxies and gateways compress whatever the client asked (`Accept-Encoding: identity`
notwithstanding), and some servers start JSON with a UTF-8 byte-order mark. Either way the
answer must read as the plain one would: a compressed `503 KILL_SWITCH` is still a kill switch.
aiohttp's own decompression stays off (it has no bound on the decoded size): `Decoder` undoes
gzip and deflate (zlib-wrapped, or raw as some servers send it) incrementally, never producing
more than the caller's limit plus one byte, so a decompression bomb is cut at the same limits as
a plain body (and the cut is seen). Other codings pass through as they came (not JSON: invalid).
"""

from __future__ import annotations

import zlib
from typing import Final

BOM: Final = b"\xef\xbb\xbf"
_GZIP: Final = frozenset({"gzip", "x-gzip"})
# zlib's window bits: 16 + 15 reads a gzip member; -15 raw deflate; 15 the zlib wrapper.
_GZIP_BITS: Final = 31
_RAW_BITS: Final = -15
_ZLIB_BITS: Final = 15


def _zlib_wrapped(first: bytes) -> bool:
    """RFC 1950's two-byte header: deflate method, and a check that makes it a multiple of 31."""
    return len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0


class Decoder:
    """Decodes one body as it arrives: `feed` each chunk, at most `limit` + 1 bytes out in all
    (`over` says the body went past `limit`). A leading byte-order mark is dropped."""

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        coding = (content_encoding or "").strip().lower()
        self._coding = coding if coding in _GZIP or coding == "deflate" else ""
        self._zlib: zlib._Decompress | None = None
        self._budget = limit + 1
        self._head = b""  # a deflate body's first bytes, until its wrapper can be told
        self._held = b""  # the first decoded bytes, until a byte-order mark can be told
        self._started = False
        self.over = False
        self.broken = False

    def feed(self, data: bytes) -> bytes:
        if self.broken or self._budget <= 0:
            return b""
        out = self._decode(data) if self._coding else data
        return self._take(self._strip_bom(out))

    def _decode(self, data: bytes) -> bytes:
        if self._zlib is None:
            if self._coding == "deflate":
                if len(self._head) + len(data) < 2:
                    self._head += data
                    return b""
                data, self._head = self._head + data, b""
                bits = _ZLIB_BITS if _zlib_wrapped(data[:2]) else _RAW_BITS
            else:
                bits = _GZIP_BITS
            self._zlib = zlib.decompressobj(bits)
        try:
            # Never more than the budget plus one: the one says it was over.
            out = self._zlib.decompress(data, self._budget + len(BOM) + 1)
        except zlib.error:
            self.broken = True  # what was decoded so far stands; the rest is not JSON
            return b""
        if self._zlib.unconsumed_tail:
            self.over = True
        return out

    def _strip_bom(self, out: bytes) -> bytes:
        if self._started:
            return out
        out = self._held + out
        if len(out) < len(BOM) and BOM.startswith(out):
            # Not yet known whether it is a mark (a body that ends here is not JSON anyway).
            self._held = out
            return b""
        self._started, self._held = True, b""
        return out.removeprefix(BOM)

    def _take(self, out: bytes) -> bytes:
        if len(out) >= self._budget:
            self.over = True
            out = out[: self._budget]
        self._budget -= len(out)
        return out
