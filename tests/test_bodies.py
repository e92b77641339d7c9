"""What a whoami body says: every field of a 200 checked, strings cleaned."""

from __future__ import annotations

import json

import pytest

from sidecar.bodies import Whoami, parse_whoami
from tests.support import WHOAMI


def body(**changes: object) -> bytes:
    return json.dumps({**WHOAMI, **changes}).encode()


def test_unknown_tier_and_unknown_fields_are_accepted() -> None:
    parsed = parse_whoami(body(rateLimitTier="platinum", futureField={"x": 1}, scopes=["a"]))
    assert isinstance(parsed, Whoami)
    assert parsed.rate_limit_tier == "platinum"


@pytest.mark.parametrize("field", [f for f in WHOAMI if f != "scopes"])
def test_a_missing_field_is_invalid(field: str) -> None:
    lacking = {k: v for k, v in WHOAMI.items() if k != field}
    reason = parse_whoami(json.dumps(lacking).encode())
    assert isinstance(reason, str)
    assert field in reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("organizationId", 42),
        ("organizationName", None),
        ("rateLimitTier", ["standard"]),
        ("killSwitch", "false"),
        ("killSwitch", 0),
        ("apiAccessRevoked", None),
        ("apiKeyId", {}),
        ("creditBalance", "2540"),
        ("creditBalance", True),
        ("creditBalance", None),
    ],
)
def test_a_mistyped_field_is_invalid(field: str, value: object) -> None:
    reason = parse_whoami(body(**{field: value}))
    assert isinstance(reason, str)
    assert field in reason


def test_fractional_and_negative_balances_are_numbers() -> None:
    fractional = parse_whoami(json.dumps({**WHOAMI, "creditBalance": 12.5}).encode())
    assert not isinstance(fractional, str)
    assert fractional.credit_balance == 12.5
    parsed = parse_whoami(json.dumps({**WHOAMI, "creditBalance": -3}).encode())
    assert not isinstance(parsed, str)
    assert parsed.credit_balance == -3
