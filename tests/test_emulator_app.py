"""The emulator answers as the upstream's pages describe, and its control API steers it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from sidecar.emulator import app as emulator
from tests.support import FAKE_KEY

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
async def client(aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(emulator.make_app(structlog.get_logger()))


async def whoami(client: Client, **headers: str) -> tuple[int, Any, Any]:
    response = await client.get("/v1/whoami", headers=headers or {"X-Api-Key": FAKE_KEY})
    return response.status, await response.json(content_type=None), response.headers


async def scenario(client: Client, **patch: Any) -> Any:
    response = await client.post("/_emulator/scenario", json=patch)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_healthy_key_gets_the_documented_fields_and_headers(client: Client) -> None:
    status, body, headers = await whoami(client)
    assert status == 200
    assert set(body) == {
        "organizationId",
        "workspaceId",
        "organizationName",
        "scopes",
        "rateLimitTier",
        "killSwitch",
        "apiAccessRevoked",
        "apiKeyId",
        "creditBalance",
    }
    assert body["scopes"] == []
    assert re.fullmatch(r"req_[0-9A-HJKMNP-TV-Z]{26}", headers["X-Request-Id"])
    assert headers["X-Layers-Api-Version"] == "v1"
    for name in ("Limit", "Remaining", "Reset", "Endpoint-Class", "Tier"):
        assert f"X-RateLimit-{name}" in headers
    assert headers["X-RateLimit-Tier"] == "standard"


async def test_bearer_is_accepted_as_the_fallback(client: Client) -> None:
    status, body, _ = await whoami(client, Authorization=f"Bearer {FAKE_KEY}")
    assert status == 200
    stats = await (await client.get("/_emulator/stats")).json()
    assert stats["lastAuthScheme"] == "bearer"
    assert stats["lastKeyId"] == "k1"
    assert body["apiKeyId"] == emulator.api_key_id("k1")


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Other": "1"}, "Missing API key."),
        ({"X-Api-Key": "k1_FAKEsecret"}, "Malformed API key."),
        ({"X-Api-Key": "lp_test_k1"}, "Malformed API key."),
        ({"Authorization": "Basic Zm9vOmJhcg=="}, "Missing API key."),
    ],
)
async def test_missing_or_malformed_keys_are_401(
    client: Client, headers: dict[str, str], message: str
) -> None:
    status, body, _ = await whoami(client, **headers)
    assert status == 401
    assert body["error"]["code"] == "UNAUTHENTICATED"
    assert body["error"]["message"] == message
    assert body["error"]["requestId"].startswith("req_")


async def test_a_revoked_key_is_401(client: Client) -> None:
    await scenario(client, revokedKeyIds=["k1"])
    status, body, _ = await whoami(client)
    assert (status, body["error"]["message"]) == (401, "API key has been revoked.")


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        ("unauthenticated", 401, "UNAUTHENTICATED"),
        ("billing_exhausted", 402, "BILLING_EXHAUSTED"),
        ("rate_limited", 429, "RATE_LIMITED"),
        ("server_error", 500, "INTERNAL"),
        ("kill_switch", 503, "KILL_SWITCH"),
        ("unavailable", 503, "UNAVAILABLE"),
        ("not_found", 404, "NOT_FOUND"),
    ],
)
async def test_failure_modes_use_the_documented_error_shape(
    client: Client, failure: str, status: int, code: str
) -> None:
    await scenario(client, failure=failure, retryAfter=7, minTier="pilot")
    got, body, headers = await whoami(client)
    assert got == status
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["requestId"] == headers["X-Request-Id"]
    if failure == "billing_exhausted":
        assert body["error"]["details"] == {"minTier": "pilot"}
    if failure == "rate_limited":
        assert headers["Retry-After"] == "7"


async def test_switches_credits_and_tier_are_steerable(client: Client) -> None:
    await scenario(client, killSwitch=True, creditBalance=12.5, rateLimitTier="partner")
    status, body, headers = await whoami(client)
    assert status == 200
    assert (body["killSwitch"], body["creditBalance"], body["rateLimitTier"]) == (
        True,
        12.5,
        "partner",
    )
    assert headers["X-RateLimit-Tier"] == "partner"


async def test_the_rate_limit_budget_is_enforced(client: Client) -> None:
    await scenario(client, rateLimitPerMinute=2)
    statuses = [(await whoami(client))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
    _, _, headers = await whoami(client)
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["Retry-After"]) > 0


async def test_a_verbatim_body(client: Client) -> None:
    await scenario(client, body={"organizationId": 1})
    status, body, _ = await whoami(client)
    assert (status, body) == (200, {"organizationId": 1})


async def test_a_huge_body(client: Client) -> None:
    await scenario(client, failure="huge")
    response = await client.get("/v1/whoami", headers={"X-Api-Key": FAKE_KEY})
    assert len(await response.read()) > emulator.HUGE_BODY_BYTES


async def test_a_redirect_points_elsewhere(client: Client) -> None:
    await scenario(client, failure="redirect")
    response = await client.get(
        "/v1/whoami", headers={"X-Api-Key": FAKE_KEY}, allow_redirects=False
    )
    assert response.status == 302
    assert response.headers["Location"].startswith("http://elsewhere.invalid/")


@pytest.mark.parametrize(
    "patch",
    [
        {"nonsense": 1},
        {"killSwitch": "yes"},
        {"creditBalance": True},
        {"failure": "explode"},
        {"delay": -1},
        [1, 2],
    ],
)
async def test_bad_scenario_patches_are_400_and_change_nothing(client: Client, patch: Any) -> None:
    before = await (await client.get("/_emulator/scenario")).json()
    response = await client.post("/_emulator/scenario", json=patch)
    assert response.status == 400
    assert "error" in await response.json()
    assert await (await client.get("/_emulator/scenario")).json() == before


@pytest.mark.parametrize("body", [b"killSwitch=true", b"{not json", b"\xff\xfe", b""])
async def test_a_body_that_is_not_json_is_a_clean_400(client: Client, body: bytes) -> None:
    response = await client.post("/_emulator/scenario", data=body)
    assert response.status == 400
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    # Says what to send, not the JSON parser's own words.
    assert error.startswith("the body must be a JSON object")
    assert "Expecting" not in error
    assert "line 1" not in error


async def test_reset_restores_the_start_and_zeroes_the_counter(client: Client) -> None:
    await scenario(client, killSwitch=True)
    await whoami(client)
    with capture_logs() as logs:
        response = await client.post("/_emulator/reset")
    assert (await response.json())["killSwitch"] is False
    # Logged, like every scenario change (before: nothing at all).
    assert [(e["event"], e["whoamiRequestsBefore"]) for e in logs] == [("scenario reset", 1)]
    stats = await (await client.get("/_emulator/stats")).json()
    assert stats["whoamiRequests"] == 0


def test_ulids_are_26_crockford_characters_and_sort_by_time() -> None:
    first, second = emulator.ulid(), emulator.ulid()
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", first)
    assert first[:10] <= second[:10]


async def test_a_malformed_key_is_logged_with_the_accepted_form(client: Client) -> None:
    with capture_logs() as logs:
        status, body, _ = await whoami(client, **{"X-Api-Key": "lk_test_x"})
    assert (status, body["error"]["message"]) == (401, "Malformed API key.")  # the upstream's
    [line] = [e for e in logs if e["event"] == "malformed api key"]
    assert "lp_<env>_<key_id>_<secret>" in line["hint"]
    assert "lk_test_x" not in str(line)  # whatever was presented is not echoed
