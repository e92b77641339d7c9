"""The probe endpoints, answered from a fake source: no poller, no network."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from sidecar import __version__
from sidecar.agent.metrics import Metrics
from sidecar.agent.probes import make_app, status_document
from sidecar.outcome import Answer, Failure, classify
from sidecar.readiness import Instant, Reason, State, Verdict, advance, verdict
from tests.support import WHOAMI_PARSED as WHOAMI
from tests.support import FakeSource, error, ok

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture
async def client(aiohttp_client: MakeClient, source: FakeSource) -> Client:
    metrics = Metrics()
    metrics.watch(source)
    return await aiohttp_client(make_app(source, metrics.registry))


async def test_readyz_ok(client: Client, source: FakeSource) -> None:
    source.current = Verdict(True, Reason.OK)
    response = await client.get("/readyz")
    assert (response.status, await response.text()) == (200, "ok\n")


async def test_readyz_not_ready_names_the_reason(client: Client, source: FakeSource) -> None:
    source.current = Verdict(False, Reason.KILL_SWITCH, "killSwitch is true")
    response = await client.get("/readyz")
    assert (response.status, await response.text()) == (503, "not ready: kill_switch\n")


async def test_readyz_verbose_in_the_api_servers_style(client: Client, source: FakeSource) -> None:
    source.current = Verdict(False, Reason.KILL_SWITCH, "killSwitch is true")
    response = await client.get("/readyz?verbose")
    assert response.status == 503
    lines = (await response.text()).splitlines()
    assert "[-]kill-switch failed: kill_switch: killSwitch is true" in lines
    assert "[+]whoami ok" in lines
    assert lines[-1] == "readyz check failed"

    source.current = Verdict(True, Reason.OK)
    response = await client.get("/readyz?verbose=1")
    lines = (await response.text()).splitlines()
    assert response.status == 200
    assert all(line.startswith("[+]") for line in lines[:-1])
    assert lines[-1] == "readyz check passed"


@pytest.mark.parametrize(
    ("reason", "check"),
    [
        (Reason.STARTING, "whoami"),
        (Reason.STALE, "whoami"),
        (Reason.UNAUTHENTICATED, "whoami"),
        (Reason.CLIENT_ERROR, "whoami"),
        (Reason.KEY_UNAVAILABLE, "api-key"),
        (Reason.ACCESS_REVOKED, "access-revoked"),
        (Reason.BILLING_EXHAUSTED, "billing"),
        (Reason.CREDITS_LOW, "credits"),
    ],
)
async def test_every_reason_fails_one_check(
    client: Client, source: FakeSource, reason: Reason, check: str
) -> None:
    source.current = Verdict(False, reason)
    lines = (await (await client.get("/readyz?verbose")).text()).splitlines()
    failed = [line for line in lines if line.startswith("[-]") and "not called" not in line]
    assert failed == [f"[-]{check} failed: {reason.value}"]


async def test_verbose_never_passes_whoami_when_no_call_was_made(
    client: Client, source: FakeSource
) -> None:
    source.current = Verdict(False, Reason.KEY_UNAVAILABLE, "key file /k does not exist")
    lines = (await (await client.get("/readyz?verbose")).text()).splitlines()
    assert "[+]whoami ok" not in lines
    assert "[-]whoami failed: not called while the api key is unavailable" in lines
    assert "[-]api-key failed: key_unavailable: key file /k does not exist" in lines
    assert lines[-1] == "readyz check failed"


def _follow(source: FakeSource, *answers: Answer, every: float = 10.0) -> None:
    """Feeds answers through the real readiness code into the fake source, 10 s apart."""
    state, mono = source.state, 1000.0
    for answer in answers:
        mono += every
        state = advance(state, classify(answer, mono), Instant(mono, mono), min_credits=None)
    source.state, source.current = state, verdict(state, mono, stale_after=90.0)


async def test_verbose_says_when_ready_is_held_through_failures(
    client: Client, source: FakeSource
) -> None:
    # Before: "[+]whoami ok" after three timeouts, as if the last poll had passed.
    _follow(source, ok(), *[Answer(failure=Failure.TIMEOUT)] * 3)
    response = await client.get("/readyz?verbose")
    assert response.status == 200
    [whoami] = [line for line in (await response.text()).splitlines() if "whoami" in line]
    assert whoami.startswith("[+]whoami ok (3 failed polls, last timeout")
    assert whoami.endswith("ready until --stale-after 90s (60s left))")


async def test_starting_after_failures_names_them_in_every_place(
    client: Client, source: FakeSource
) -> None:
    _follow(source, *[error(500, "INTERNAL")] * 5)
    lines = (await (await client.get("/readyz?verbose")).text()).splitlines()
    assert lines[0].startswith(
        "[-]whoami failed: starting: no good answer yet: 5 failed polls, last server_error: "
        "HTTP 500"
    )
    body = await (await client.get("/status")).json()
    assert body["detail"].startswith("no good answer yet: 5 failed polls, last server_error")
    assert body["lastOutcome"] == "server_error"


async def test_status_after_a_hard_stop_then_a_transient_is_coherent(
    client: Client, source: FakeSource
) -> None:
    _follow(source, ok(), error(401, "UNAUTHENTICATED"), Answer(failure=Failure.TIMEOUT))
    body = await (await client.get("/status")).json()
    assert (body["ready"], body["reason"], body["lastOutcome"]) == (
        False,
        "unauthenticated",
        "timeout",
    )
    # The detail names the stop that still rules and the timeout lastOutcome shows.
    assert body["detail"].startswith("HTTP 401 UNAUTHENTICATED")
    assert "since then 1 failed poll, last timeout" in body["detail"]


async def test_livez_follows_the_loop_not_the_upstream(client: Client, source: FakeSource) -> None:
    source.current = Verdict(False, Reason.KILL_SWITCH)
    assert (await client.get("/livez")).status == 200
    source.is_alive = False
    assert (await client.get("/livez")).status == 503


async def test_head_works_where_get_does(client: Client, source: FakeSource) -> None:
    source.current = Verdict(True, Reason.OK)
    for path in ("/readyz", "/livez", "/status", "/metrics"):
        assert (await client.head(path)).status == 200, path
    source.current = Verdict(False, Reason.STALE)
    assert (await client.head("/readyz")).status == 503


async def test_unknown_paths_are_404(client: Client) -> None:
    assert (await client.get("/ready")).status == 404
    assert (await client.get("/")).status == 404


async def test_status_before_the_first_answer(client: Client) -> None:
    body = await (await client.get("/status")).json()
    assert body["ready"] is False
    assert body["reason"] == "starting"
    assert body["creditBalance"] is None
    assert body["lastSuccessAt"] is None
    assert body["consecutiveFailures"] == 0


async def test_status_names_the_url_polled_and_the_version(
    aiohttp_client: MakeClient, source: FakeSource
) -> None:
    url = "https://api.layers.example/v1/whoami"
    app = make_app(source, Metrics().registry, whoami_url=url)
    body = await (await (await aiohttp_client(app)).get("/status")).json()
    assert body["whoamiUrl"] == url
    assert body["version"] == __version__


def test_status_document_has_every_field_the_spec_names() -> None:
    state = State(
        whoami=WHOAMI,
        kill_switch=False,
        access_revoked=False,
        last_outcome="ok",
        last_attempt_at=1_800_000_000.25,
        last_success_at=1_800_000_000.25,
        last_request_id="req_1",
    )
    document = status_document(state, Verdict(True, Reason.OK))
    for name in (
        "ready",
        "reason",
        "organizationId",
        "workspaceId",
        "organizationName",
        "rateLimitTier",
        "creditBalance",
        "killSwitch",
        "apiAccessRevoked",
        "apiKeyId",
        "lastOutcome",
        "lastAttemptAt",
        "lastSuccessAt",
        "lastRequestId",
        "consecutiveFailures",
    ):
        assert name in document, name
    assert document["lastSuccessAt"] == "2027-01-15T08:00:00.250Z"
    assert document["creditBalance"] == 2540
    assert isinstance(document["creditBalance"], int)


async def test_metrics_negotiates_openmetrics(client: Client) -> None:
    plain = await client.get("/metrics")
    assert plain.headers["Content-Type"].startswith("text/plain")
    assert "layers_ready 0.0" in await plain.text()
    negotiated = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert negotiated.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await negotiated.text()).endswith("# EOF\n")
