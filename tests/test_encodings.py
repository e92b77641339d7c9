"""Wire forms a proxy may add: gzip and deflate bodies, a UTF-8 byte-order mark. The verdict is
the plain answer's; a decompression bomb is cut at the same limits, on the decoded bytes.

Pure on `Decoder` and `classify`; then over loopback from a raw-socket upstream (tests/hostile.py),
to the whoami client directly and through a real hub.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sidecar.encodings import BOM, Decoder
from sidecar.outcome import BODY_LIMIT, SWITCH_SEARCH_LIMIT, Answer, Outcome, classify
from sidecar.secret import Secret
from sidecar.values import AuthScheme
from sidecar.whoami import client_session, fetch
from tests.hostile import GOOD, Hostile, hostile, response
from tests.support import FAKE_KEY, hub

KILL = {"error": {"code": "KILL_SWITCH", "message": "Kill switch on.", "requestId": "req_k"}}


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-15)
    return packer.compress(data) + packer.flush()


CODINGS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gzip.compress),
    "x-gzip": ("x-gzip", gzip.compress),
    "deflate-zlib": ("deflate", zlib.compress),
    "deflate-raw": ("deflate", raw_deflate),
    "bom": ("identity", lambda data: BOM + data),
    "gzip-bom": ("gzip", lambda data: gzip.compress(BOM + data)),
}


def decode(coding: str, data: bytes, limit: int, step: int = 7) -> tuple[bytes, bool]:
    """Fed in small pieces, as a slow network would hand them over."""
    decoder = Decoder(coding, limit)
    out = b"".join(decoder.feed(data[i : i + step]) for i in range(0, len(data), step))
    return out[:limit], decoder.over or len(out) > limit


@pytest.mark.parametrize("case", CODINGS)
@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [(200, GOOD, Outcome.OK), (503, KILL, Outcome.KILL_SWITCH)],
    ids=["ok", "kill-switch"],
)
def test_an_encoded_answer_has_the_plain_answers_verdict(
    case: str, status: int, body: object, outcome: Outcome
) -> None:
    coding, encode = CODINGS[case]
    plain = json.dumps(body).encode()
    decoded, over = decode(coding, encode(plain), SWITCH_SEARCH_LIMIT)
    assert (decoded, over) == (plain, False)
    assert classify(Answer(status=status, body=decoded), 0.0).outcome is outcome


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_decompression_bomb_is_cut_at_the_limit_of_decoded_bytes(coding: str) -> None:
    # 100 MiB of zeros after a stated kill switch: a few hundred KiB on the wire.
    body = b'{"killSwitch": true, "padding": "' + b"0" * (100 * 1024 * 1024) + b'"}'
    packed = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    decoder = Decoder(coding, BODY_LIMIT)
    produced = 0
    for i in range(0, len(packed), 65536):
        produced += len(decoder.feed(packed[i : i + 65536]))
    assert decoder.over
    assert produced <= BODY_LIMIT + 1
    decoded, over = decode(coding, packed, SWITCH_SEARCH_LIMIT, step=65536)
    assert over
    assert len(decoded) == SWITCH_SEARCH_LIMIT
    # The switch search still works on the decoded prefix.
    answer = Answer(status=200, body=decoded, too_large=True)
    assert classify(answer, 0.0).outcome is Outcome.KILL_SWITCH


def test_a_broken_stream_keeps_what_was_decoded_and_is_not_json() -> None:
    packed = gzip.compress(json.dumps(GOOD).encode())
    decoded, _ = decode("gzip", packed[:20] + b"\x00" * 40, BODY_LIMIT)
    assert classify(Answer(status=200, body=decoded), 0.0).outcome is Outcome.INVALID_RESPONSE


def test_unknown_codings_pass_through_as_they_came() -> None:
    assert decode("br", b"\x1b\x00abc", BODY_LIMIT) == (b"\x1b\x00abc", False)
    assert decode(None, BOM + b"{}", BODY_LIMIT) == (b"{}", False)  # type: ignore[arg-type]


# Over loopback: a raw upstream that compresses whatever the client asked.


def encoded(status: int, body: object, case: str) -> bytes:
    coding, encode = CODINGS[case]
    return response(
        status,
        encode(json.dumps(body).encode()),
        headers={"Content-Encoding": coding, "X-Request-Id": "req_enc"},
    )


@pytest.fixture
def upstream() -> Iterator[Hostile]:
    with hostile() as running:
        yield running


@pytest.mark.parametrize("case", ["gzip", "deflate-zlib", "deflate-raw", "bom"])
@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [(200, GOOD, Outcome.OK), (503, KILL, Outcome.KILL_SWITCH)],
    ids=["ok", "kill-switch"],
)
async def test_the_whoami_client_reads_an_encoded_answer_as_the_plain_one(
    upstream: Hostile, case: str, status: int, body: object, outcome: Outcome
) -> None:
    upstream.set(encoded(status, body, case))
    async with client_session() as session:
        answer = await fetch(
            session,
            upstream.url + "/v1/whoami",
            Secret(FAKE_KEY),
            scheme=AuthScheme.X_API_KEY,
            timeout=5,
        )
    assert answer.failure is None
    assert answer.body == json.dumps(body).encode()
    assert classify(answer, 0.0).outcome is outcome


async def test_a_bomb_over_the_wire_is_cut_and_its_switch_still_found(upstream: Hostile) -> None:
    body = b'{"killSwitch": true, "x": "' + b"0" * (64 * 1024 * 1024) + b'"}'
    upstream.set(response(200, gzip.compress(body), headers={"Content-Encoding": "gzip"}))
    async with client_session() as session:
        answer = await fetch(
            session,
            upstream.url + "/v1/whoami",
            Secret(FAKE_KEY),
            scheme=AuthScheme.X_API_KEY,
            timeout=10,
        )
    assert answer.too_large
    assert len(answer.body) == SWITCH_SEARCH_LIMIT
    assert classify(answer, 0.0).outcome is Outcome.KILL_SWITCH


@pytest.mark.parametrize("case", ["gzip", "deflate-raw", "bom"])
@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [(200, GOOD, Outcome.OK), (503, KILL, Outcome.KILL_SWITCH)],
    ids=["ok", "kill-switch"],
)
async def test_a_sidecar_behind_the_hub_gets_the_plain_answers_verdict(
    upstream: Hostile, tmp_path: Path, case: str, status: int, body: object, outcome: Outcome
) -> None:
    """The hub passes the decoded body on, without the upstream's Content-Encoding."""
    upstream.set(encoded(status, body, case))
    with hub(tmp_path, upstream.url) as running:
        async with client_session() as session:
            answer = await fetch(
                session,
                running.url + "/v1/whoami",
                Secret(FAKE_KEY),
                scheme=AuthScheme.X_API_KEY,
                timeout=5,
            )
    assert answer.status == status
    assert answer.body == json.dumps(body).encode()
    assert classify(answer, 0.0).outcome is outcome
