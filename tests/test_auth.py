"""The key in a request, both ways: the header the agent sends, and how the hub and the
emulator read the caller's."""

from __future__ import annotations

import pytest

from sidecar.auth import auth_headers, presented_key
from sidecar.secret import Secret
from sidecar.values import AuthScheme
from tests.support import FAKE_KEY, OTHER_KEY


def test_the_key_goes_where_its_scheme_says() -> None:
    key = Secret(FAKE_KEY)
    assert auth_headers(key, AuthScheme.X_API_KEY) == {"X-Api-Key": FAKE_KEY}
    assert auth_headers(key, AuthScheme.BEARER) == {"Authorization": f"Bearer {FAKE_KEY}"}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Api-Key": FAKE_KEY}, (FAKE_KEY, AuthScheme.X_API_KEY)),
        # As sent: judging an X-Api-Key (empty, padded) is the caller's business.
        ({"X-Api-Key": ""}, ("", AuthScheme.X_API_KEY)),
        ({"Authorization": f"Bearer  {FAKE_KEY} "}, (FAKE_KEY, AuthScheme.BEARER)),
        ({"Authorization": f"bearer {FAKE_KEY}"}, (FAKE_KEY, AuthScheme.BEARER)),
        ({"X-Api-Key": FAKE_KEY, "Authorization": f"Bearer {OTHER_KEY}"}, (FAKE_KEY, "x")),
        ({"Authorization": "Bearer"}, (None, None)),
        ({"Authorization": f"Basic {FAKE_KEY}"}, (None, None)),
        ({}, (None, None)),
    ],
)
def test_the_caller_s_key_is_read_as_layers_reads_it(
    headers: dict[str, str], expected: tuple[str | None, object]
) -> None:
    key, scheme = presented_key(headers)
    assert key == expected[0]
    if expected[1] == "x":  # X-Api-Key first; the Bearer token is then ignored
        assert scheme is AuthScheme.X_API_KEY
    else:
        assert scheme == expected[1]
