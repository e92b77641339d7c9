"""The hub's HTTP edge in process: which key a request carries, and the app's answers (from a
hub on an in-process upstream), the headers that keep a shared cache from sharing them, and
the request counter the handlers are given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sidecar.emulator import app as emulator
from sidecar.hub.metrics import HubMetrics
from sidecar.hub.server import COUNT, make_app, tls_context, usable_key
from sidecar.hub.upstream import Hub
from sidecar.options import ConfigError
from sidecar.settings import AuthScheme, Settings
from tests.support import FAKE_KEY, OTHER_KEY


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Api-Key": FAKE_KEY}, (FAKE_KEY, AuthScheme.X_API_KEY)),
        ({"X-Api-Key": f"  {FAKE_KEY} "}, (FAKE_KEY, AuthScheme.X_API_KEY)),
        ({"Authorization": f"Bearer {FAKE_KEY}"}, (FAKE_KEY, AuthScheme.BEARER)),
        ({"Authorization": f"bearer {FAKE_KEY}"}, (FAKE_KEY, AuthScheme.BEARER)),
        # X-Api-Key first, as Layers reads it; the Bearer token is then ignored.
        (
            {"X-Api-Key": FAKE_KEY, "Authorization": f"Bearer {OTHER_KEY}"},
            (FAKE_KEY, AuthScheme.X_API_KEY),
        ),
    ],
)
def test_the_key_is_read_as_layers_reads_it(
    headers: dict[str, str], expected: tuple[str, AuthScheme]
) -> None:
    assert usable_key(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Api-Key": ""},
        {"X-Api-Key": "   "},
        {"Authorization": f"Basic {FAKE_KEY}"},
        {"Authorization": "Bearer "},
        {"X-Api-Key": "lp_test_k1_" + "a" * 600},
        {"X-Api-Key": "lp_test_k1_é"},
        {"X-Api-Key": "lp test k1"},
    ],
)
def test_no_usable_key_is_none(headers: dict[str, str]) -> None:
    assert usable_key(headers)[0] is None


# The app, in process, in front of the in-process emulator.

MakeServer = Callable[[web.Application], Awaitable[TestServer]]
MakeClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


class Counted:
    """The request counter the handlers are given: what they counted, in order."""

    def __init__(self) -> None:
        self.counted: list[str] = []

    def __call__(self, how: str) -> None:
        self.counted.append(how)


@pytest.fixture
async def upstream(aiohttp_server: MakeServer) -> TestServer:
    return await aiohttp_server(emulator.make_app(structlog.get_logger(component="emulator")))


async def hub_client(
    upstream: TestServer, aiohttp_client: MakeClient, **changes: Any
) -> tuple[TestClient[web.Request, web.Application], HubMetrics, Counted]:
    settings = Settings(api_url=str(upstream.make_url("/")).rstrip("/"), **changes)
    metrics = HubMetrics()
    hub = Hub(settings, log=structlog.get_logger(), on_upstream=metrics.observe_upstream)
    metrics.watch(hub)
    app = make_app(hub, metrics)
    counted = Counted()
    counter: Callable[[str], None] = counted
    app[COUNT] = counter
    return await aiohttp_client(app), metrics, counted


async def test_a_miss_then_a_hit_each_counted_and_private(
    upstream: TestServer, aiohttp_client: MakeClient
) -> None:
    client, _, counted = await hub_client(upstream, aiohttp_client)
    first = await client.get("/v1/whoami", headers={"X-Api-Key": FAKE_KEY})
    second = await client.get("/v1/whoami", headers={"X-Api-Key": FAKE_KEY})
    assert (first.status, second.status) == (200, 200)
    assert (first.headers["X-Layers-Hub"], second.headers["X-Layers-Hub"]) == ("miss", "hit")
    assert second.headers["Cache-Control"] == "no-store"
    assert second.headers["Vary"] == "X-Api-Key, Authorization"
    assert (await second.json())["organizationName"] == "Acme Growth"
    assert counted.counted == ["miss", "hit"]


async def test_no_key_is_401_rejected_without_an_upstream_call(
    upstream: TestServer, aiohttp_client: MakeClient
) -> None:
    client, _, counted = await hub_client(upstream, aiohttp_client)
    answer = await client.get("/v1/whoami")
    assert answer.status == 401
    assert (await answer.json())["error"]["code"] == "UNAUTHENTICATED"
    assert answer.headers["X-Layers-Hub"] == "error"
    assert counted.counted == ["rejected"]
    assert upstream.app[emulator.EMULATOR].whoami_requests == 0


async def test_past_the_budget_a_miss_is_503_hub_busy_with_retry_after(
    upstream: TestServer, aiohttp_client: MakeClient
) -> None:
    client, _, counted = await hub_client(upstream, aiohttp_client, max_upstream_rate=1.0)
    assert (await client.get("/v1/whoami", headers={"X-Api-Key": FAKE_KEY})).status == 200
    busy = await client.get("/v1/whoami", headers={"X-Api-Key": OTHER_KEY})
    assert busy.status == 503
    assert (await busy.json())["error"]["code"] == "HUB_BUSY"
    assert int(busy.headers["Retry-After"]) >= 1
    assert counted.counted == ["miss", "rejected"]


async def test_readyz_livez_and_metrics(upstream: TestServer, aiohttp_client: MakeClient) -> None:
    client, _, _ = await hub_client(upstream, aiohttp_client)
    assert (await client.get("/v1/whoami", headers={"X-Api-Key": FAKE_KEY})).status == 200
    for path in ("/readyz", "/livez"):
        answer = await client.get(path)
        assert (answer.status, await answer.text()) == (200, "ok\n")
    scraped = await (await client.get("/metrics")).text()
    assert 'layers_hub_upstream_requests_total{outcome="ok"} 1.0' in scraped
    assert "layers_hub_keys 1.0" in scraped


def test_a_bad_tls_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("not a certificate\n")
    (tmp_path / "tls.key").write_text("not a key\n")
    settings = Settings(tls_cert_file=tmp_path / "tls.crt", tls_key_file=tmp_path / "tls.key")
    with pytest.raises(ConfigError, match=r"^--tls-cert-file: cannot use "):
        tls_context(settings)
    assert tls_context(Settings()) is None
