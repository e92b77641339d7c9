"""`layers-sidecar hub` as users run it: a real hub process in front of the real emulator.

Every rule of fleet mode is checked over loopback: coalescing, key isolation (even during a
coalesced call), the hub's own errors, TTL and 429 caching, the bounds, the per-key gauges, TLS,
and that no key shows in any log line, answer or metric.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from http.client import HTTPException
from pathlib import Path

import aiohttp
import pytest

from tests.support import (
    FAKE_KEY,
    FAKE_SECRET,
    OTHER_KEY,
    Emulator,
    Process,
    Reply,
    certificates,
    clean_env,
    command,
    emulator,
    free_port,
    http,
    hub,
    sample,
    sidecar,
    start,
    wait_for,
)
from tests.tools import tool

pytestmark = pytest.mark.e2e

WRONG_SECRET_KEY = "lp_test_k1_WRONGsecretWRONG"  # the same key id as FAKE_KEY, another secret
REVOKED_KEY = "lp_test_k9_REVOKEDfakeREVOKED"


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Emulator]:
    with emulator(tmp_path) as running:
        running.set(rateLimitPerMinute=1_000_000)
        yield running


def ask(process: Process, key: str | None = FAKE_KEY, *, bearer: bool = False) -> Reply:
    headers: dict[str, str] = {}
    if key is not None:
        headers = {"Authorization": f"Bearer {key}"} if bearer else {"X-Api-Key": key}
    return process.get("/v1/whoami", headers=headers)


def header(reply: Reply, name: str) -> str:
    """A header of a reply, whatever the case the server wrote it in."""
    for key, value in reply.headers.items():
        if key.lower() == name.lower():
            return value
    raise AssertionError(f"no {name} header in {dict(reply.headers)}")


def http_get(url: str) -> int:
    """One plain request that raises on a broken connection instead of retrying."""
    return http("GET", url, timeout=5).status


def aged_reply(process: Process, age: str) -> Reply | None:
    """An answer whose Age header is `age`, or None."""
    reply = ask(process)
    return reply if header(reply, "Age") == age else None


def scrape(process: Process) -> str:
    reply = process.get("/metrics")
    assert reply.status == 200
    return reply.body


async def ask_many(
    url: str, keys: list[str], *, connections: int = 0
) -> list[tuple[int, Mapping[str, str], bytes]]:
    """All the requests at once, each on its own connection, as a fleet's pods would."""
    connector = aiohttp.TCPConnector(limit=connections, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(key: str) -> tuple[int, Mapping[str, str], bytes]:
            async with session.get(url + "/v1/whoami", headers={"X-Api-Key": key}) as response:
                return response.status, response.headers.copy(), await response.read()

        return await asyncio.gather(*(one(key) for key in keys))


# Coalescing and key isolation.


async def test_hundreds_of_concurrent_callers_make_one_upstream_call(
    upstream: Emulator, tmp_path: Path
) -> None:
    upstream.set(delay=1.0)
    with hub(tmp_path, upstream.url) as running:
        replies = await ask_many(running.url, [FAKE_KEY] * 300)
        assert upstream.whoami_requests() == 1
        assert {status for status, _, _ in replies} == {200}
        assert len({body for _, _, body in replies}) == 1
        how = Counter(headers["X-Layers-Hub"] for _, headers, _ in replies)
        assert how["miss"] == 1
        assert how["coalesced"] > 0
        assert how["miss"] + how["coalesced"] + how["hit"] == 300
        metrics = scrape(running)
        assert sample(metrics, "layers_hub_requests_total", result="miss") == 1
        assert sample(metrics, "layers_hub_upstream_requests_total", outcome="ok") == 1


async def test_a_wrong_key_during_a_coalesced_call_gets_its_own_answer(
    upstream: Emulator, tmp_path: Path
) -> None:
    upstream.set(delay=1.0, revokedKeyIds=["k9"])
    with hub(tmp_path, upstream.url) as running:
        good = asyncio.ensure_future(ask_many(running.url, [FAKE_KEY] * 50))
        await asyncio.to_thread(
            wait_for, lambda: upstream.whoami_requests() >= 1, what="the first call in flight"
        )
        intruders = await ask_many(
            running.url, [WRONG_SECRET_KEY, REVOKED_KEY, "not-a-layers-key", OTHER_KEY]
        )
        replies = await good
    request_ids = {headers["X-Request-Id"] for _, headers, _ in replies}
    assert len(request_ids) == 1
    assert {status for status, _, _ in replies} == {200}
    (wrong, revoked, malformed, other) = intruders
    # Each intruder caused a call of its own: none rode on the good key's call.
    assert upstream.whoami_requests() == 5
    for _status, headers, _ in intruders:
        assert headers["X-Layers-Hub"] == "miss"
        assert headers["X-Request-Id"] not in request_ids
    assert (revoked[0], malformed[0]) == (401, 401)
    assert b"revoked" in revoked[2]
    assert (wrong[0], other[0]) == (200, 200)  # the emulator does not check secrets; Layers does


def test_a_revoked_key_never_gets_its_old_answer_past_the_ttl(
    upstream: Emulator, tmp_path: Path
) -> None:
    with hub(tmp_path, upstream.url, "--ttl", "300ms") as running:
        assert ask(running).status == 200
        upstream.set(revokedKeyIds=["k1"])
        wait_for(lambda: ask(running).status == 401, what="the revocation to reach callers")
        assert header(ask(running), "X-Layers-Hub") in ("hit", "miss")
        assert all(ask(running).status == 401 for _ in range(5))
        assert ask(running, OTHER_KEY).status == 200  # another key is not affected


def test_a_key_with_another_secret_never_gets_a_cached_answer(
    upstream: Emulator, tmp_path: Path
) -> None:
    with hub(tmp_path, upstream.url, "--ttl", "1m") as running:
        first = ask(running)
        assert header(first, "X-Layers-Hub") == "miss"
        second = ask(running, WRONG_SECRET_KEY)
        assert header(second, "X-Layers-Hub") == "miss"
        assert header(second, "X-Request-Id") != header(first, "X-Request-Id")
        assert upstream.whoami_requests() == 2
        assert header(ask(running), "X-Layers-Hub") == "hit"
        assert header(ask(running, bearer=True), "X-Layers-Hub") == "hit"  # same key, any header


# The hub's own errors.


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Api-Key": ""},
        {"Authorization": f"Basic {FAKE_KEY}"},
        {"X-Api-Key": "lp_test_k1_" + "x" * 600},
    ],
    ids=["none", "empty", "not-bearer", "too-long"],
)
def test_no_key_is_401_without_an_upstream_call(
    upstream: Emulator, tmp_path: Path, headers: dict[str, str]
) -> None:
    with hub(tmp_path, upstream.url) as running:
        reply = running.get("/v1/whoami", headers=headers)
        assert reply.status == 401
        assert reply.json()["error"]["code"] == "UNAUTHENTICATED"
        assert header(reply, "X-Layers-Hub") == "error"
        assert reply.json()["error"]["requestId"] == header(reply, "X-Request-Id")
        assert upstream.whoami_requests() == 0
        assert sample(scrape(running), "layers_hub_requests_total", result="rejected") == 1


def test_past_the_upstream_rate_a_miss_is_503_hub_busy(upstream: Emulator, tmp_path: Path) -> None:
    with hub(tmp_path, upstream.url, "--max-upstream-rate", "0.2") as running:
        replies = [ask(running, f"lp_test_k{i}_FAKEsecretFAKE") for i in range(10)]
        statuses = [reply.status for reply in replies]
        assert statuses[0] == 200
        busy = [reply for reply in replies if reply.status == 503]
        assert len(busy) == 9
        for reply in busy:
            assert reply.json()["error"]["code"] == "HUB_BUSY"
            assert header(reply, "X-Layers-Hub") == "error"
            assert int(header(reply, "Retry-After")) >= 1
        assert upstream.whoami_requests() == 1
        # A cached key is still answered: the budget bounds upstream calls, not hits.
        assert ask(running, "lp_test_k0_FAKEsecretFAKE").status == 200
        assert sample(scrape(running), "layers_hub_requests_total", result="rejected") == 9


async def test_a_flood_of_random_keys_does_not_starve_a_known_key(
    upstream: Emulator, tmp_path: Path
) -> None:
    with hub(tmp_path, upstream.url, "--max-upstream-rate", "5", "--ttl", "300ms") as running:
        assert ask(running).status == 200  # the upstream has accepted this key once
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def get(key: str, after: float = 0.0) -> tuple[int, str]:
                await asyncio.sleep(after)
                headers = {"X-Api-Key": key}
                async with session.get(running.url + "/v1/whoami", headers=headers) as response:
                    await response.read()
                    return response.status, response.headers["X-Layers-Hub"]

            known: list[tuple[int, str]] = []
            flooded: list[tuple[int, str]] = []
            for round_ in range(3):
                flood = [get(f"lp_test_f{round_}x{i}_RANDOMfakeRANDOM") for i in range(150)]
                # Past the TTL, in the middle of the flood: the known key needs a fresh call.
                *answers, mine = await asyncio.gather(*flood, get(FAKE_KEY, after=0.35))
                flooded += answers
                known.append(mine)
    assert known == [(200, "miss")] * 3  # each refresh got through
    assert sum(status == 503 for status, _ in flooded) > 300  # the flood was refused


def test_an_unreachable_upstream_is_502_cached_for_one_second(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with hub(tmp_path, closed) as running:
        first, second = ask(running), ask(running)
        for reply in (first, second):
            assert reply.status == 502
            assert reply.json()["error"]["code"] == "UPSTREAM_UNAVAILABLE"
            assert header(reply, "X-Layers-Hub") == "error"
        attempts = sample(
            scrape(running), "layers_hub_upstream_requests_total", outcome="network_error"
        )
        assert attempts == 1  # the second caller got the remembered failure
        wait_for(
            lambda: (
                ask(running).status == 502
                and sample(
                    scrape(running), "layers_hub_upstream_requests_total", outcome="network_error"
                )
                == 2
            ),
            what="a new attempt after one second",
        )


def test_a_slow_upstream_is_504(upstream: Emulator, tmp_path: Path) -> None:
    upstream.set(delay=3)
    with hub(tmp_path, upstream.url, "--timeout", "300ms") as running:
        first, second = ask(running), ask(running)
        for reply in (first, second):
            assert reply.status == 504
            assert reply.json()["error"]["code"] == "UPSTREAM_TIMEOUT"
            assert header(reply, "X-Layers-Hub") == "error"
        assert upstream.whoami_requests() == 1
        assert sample(scrape(running), "layers_hub_upstream_requests_total", outcome="timeout") == 1


def test_upstream_errors_pass_through_unchanged(upstream: Emulator, tmp_path: Path) -> None:
    upstream.set(failure="server_error")
    with hub(tmp_path, upstream.url) as running:
        reply = ask(running)
        assert reply.status == 500
        assert reply.json()["error"]["code"] == "INTERNAL"
        assert header(reply, "X-Layers-Hub") == "miss"  # Layers' error, not the hub's
        assert header(reply, "X-Layers-Api-Version") == "v1"


# TTL and 429.


def test_an_answer_serves_for_the_ttl_with_its_age(upstream: Emulator, tmp_path: Path) -> None:
    with hub(tmp_path, upstream.url, "--ttl", "2500ms") as running:
        first = ask(running)
        assert (header(first, "X-Layers-Hub"), header(first, "Age")) == ("miss", "0")
        for name in ("Cache-Control", "Vary"):
            assert (
                header(first, name)
                == {"Cache-Control": "no-store", "Vary": "X-Api-Key, Authorization"}[name]
            )
        for name in (
            "X-Request-Id",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
        ):
            header(first, name)
        aged = wait_for(
            lambda: aged_reply(running, "1"),
            what="a hit a second old",
        )
        assert header(aged, "X-Layers-Hub") == "hit"
        assert header(aged, "X-Request-Id") == header(first, "X-Request-Id")
        assert aged.body == first.body
        assert upstream.whoami_requests() == 1
        wait_for(lambda: header(ask(running), "X-Layers-Hub") == "miss", what="the TTL to end")
        assert upstream.whoami_requests() == 2


def test_a_429_is_cached_until_its_retry_after(upstream: Emulator, tmp_path: Path) -> None:
    upstream.set(failure="rate_limited", retryAfter=3)
    with hub(tmp_path, upstream.url, "--ttl", "500ms") as running:
        first = ask(running)
        assert first.status == 429
        assert header(first, "Retry-After") == "3"
        # Still the same answer a second later, twice the TTL: the 429 holds past --ttl.
        held = wait_for(
            lambda: aged_reply(running, "1"),
            what="a 429 a second old",
        )
        assert (held.status, header(held, "X-Layers-Hub")) == (429, "hit")
        assert upstream.whoami_requests() == 1
        wait_for(lambda: header(ask(running), "X-Layers-Hub") == "miss", what="the Retry-After")
        assert upstream.whoami_requests() == 2


def test_a_long_retry_after_is_bounded_by_ten_ttls(upstream: Emulator, tmp_path: Path) -> None:
    upstream.set(failure="rate_limited", retryAfter=3600)
    with hub(tmp_path, upstream.url, "--ttl", "200ms") as running:
        assert ask(running).status == 429
        # 10 x 200 ms, not an hour: the wait below would time out otherwise.
        wait_for(
            lambda: header(ask(running), "X-Layers-Hub") == "miss",
            timeout=8,
            what="the bounded 429 to end",
        )
        assert upstream.whoami_requests() == 2


# The bounds and the per-key gauges.


def test_max_keys_bounds_what_the_hub_remembers(upstream: Emulator, tmp_path: Path) -> None:
    with hub(tmp_path, upstream.url, "--max-keys", "3", "--ttl", "1m") as running:
        keys = [f"lp_test_k{i}_FAKEsecretFAKE" for i in range(5)]
        assert all(ask(running, key).status == 200 for key in keys)
        assert sample(scrape(running), "layers_hub_keys") == 3
        assert header(ask(running, keys[-1]), "X-Layers-Hub") == "hit"
        assert header(ask(running, keys[0]), "X-Layers-Hub") == "miss"  # evicted, asked again
        assert upstream.whoami_requests() == 6


def test_per_key_gauges_one_series_per_key(upstream: Emulator, tmp_path: Path) -> None:
    with hub(tmp_path, upstream.url, "--ttl", "200ms") as running:
        ids = [ask(running, key).json()["apiKeyId"] for key in (FAKE_KEY, OTHER_KEY)]
        assert all(ask(running, FAKE_KEY).status == 200 for _ in range(3))
        metrics = scrape(running)
        org = "2481fa5c-a404-44ed-a561-565392499abc"
        for api_key_id in ids:
            labels = {"api_key_id": api_key_id, "organization_id": org}
            assert sample(metrics, "layers_hub_credit_balance", **labels) == 2540
            assert sample(metrics, "layers_hub_kill_switch", **labels) == 0
            assert sample(metrics, "layers_hub_api_access_revoked", **labels) == 0
        series = [
            line for line in metrics.splitlines() if line.startswith("layers_hub_kill_switch")
        ]
        assert len(series) == 2
        checked = subprocess.run(
            [tool("promtool"), "check", "metrics"],
            input=metrics,
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout == "", checked.stdout  # no lint findings either
        upstream.set(killSwitch=True)

        def switched() -> bool:
            ask(running, FAKE_KEY)
            return sample(scrape(running), "layers_hub_kill_switch", api_key_id=ids[0]) == 1

        wait_for(switched, what="the kill switch in the per-key gauge")


def test_livez_and_readyz_say_whether_the_hub_serves(upstream: Emulator, tmp_path: Path) -> None:
    upstream.set(killSwitch=True, failure="server_error")
    with hub(tmp_path, upstream.url) as running:
        assert ask(running).status == 500
        assert (running.get("/livez").status, running.get("/readyz").status) == (200, 200)
        assert running.get("/nowhere").status == 404


# TLS.


def test_https_with_a_certificate_the_sidecar_trusts(
    upstream: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = certificates(tmp_path)
    cert, key = tls.cert, tls.key
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))  # for this test's own HTTPS client
    env = clean_env(LAYERS_API_URL=upstream.url, LAYERS_SIDECAR_LISTEN=f"127.0.0.1:{port}")
    process = start(
        ["hub", "--tls-cert-file", str(cert), "--tls-key-file", str(key)],
        env=env,
        tmp=tmp_path,
        name="hub",
        url=url,
        ready_path="/livez",
    )
    try:
        reply = ask(process)
        assert reply.status == 200
        assert header(reply, "X-Layers-Hub") == "miss"
        with pytest.raises((OSError, HTTPException)):
            http_get(f"http://127.0.0.1:{port}/livez")  # HTTPS only: plain HTTP is refused
        with sidecar(tmp_path, url, SSL_CERT_FILE=str(tls.ca)) as sc:
            wait_for(lambda: sc.get("/readyz").status == 200, what="the sidecar ready via HTTPS")
    finally:
        process.stop()


def test_a_bad_tls_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.crt"
    done = subprocess.run(
        command("hub", "--tls-cert-file", str(missing), "--tls-key-file", str(missing)),
        env=clean_env(LAYERS_SIDECAR_LISTEN="127.0.0.1:0"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("layers-sidecar hub: --tls-cert-file: ")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--ttl", "0"], "--ttl"),
        (["--max-keys", "none"], "--max-keys"),
        (["--max-upstream-rate", "-1"], "--max-upstream-rate"),
        (["--tls-cert-file", "/tls.crt"], "--tls-cert-file"),
    ],
)
def test_a_bad_hub_setting_is_one_line_and_exit_2(args: list[str], named: str) -> None:
    done = subprocess.run(
        command("hub", *args), env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == done.stderr.splitlines()[0]
    assert done.stderr.startswith(f"layers-sidecar hub: {named}: ")


def test_hub_help_names_every_setting() -> None:
    done = subprocess.run(
        command("hub", "--help"), env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for name in (
        "LAYERS_HUB_TTL",
        "LAYERS_HUB_MAX_KEYS",
        "LAYERS_HUB_MAX_UPSTREAM_RATE",
        "LAYERS_HUB_TLS_CERT_FILE",
        "LAYERS_HUB_TLS_KEY_FILE",
        "LAYERS_API_URL",
        "LAYERS_SIDECAR_LISTEN",
        "LAYERS_SIDECAR_TIMEOUT",
    ):
        assert name in done.stdout
    assert "--api-key-file" not in done.stdout  # the hub holds no key of its own


# No key anywhere.


def test_no_key_in_any_log_answer_or_metric(upstream: Emulator, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    seen: list[str] = []
    with hub(tmp_path, upstream.url, "--ttl", "200ms", "--max-upstream-rate", "1000") as running:
        for scenario in (
            {},
            {"killSwitch": True},
            {"failure": "unauthenticated"},
            {"failure": "rate_limited", "retryAfter": 0},
            {"failure": "kill_switch"},
            {"failure": "server_error"},
            {"failure": "reset"},
            {"delay": 0.5},
        ):
            upstream.reset()
            upstream.set(rateLimitPerMinute=1_000_000, **scenario)
            # Past the last scenario's TTL: this one's answers come from the upstream.
            wait_for(
                lambda: ask(running).status and upstream.whoami_requests() > 0,
                what="a call in this scenario",
            )
            for key in (FAKE_KEY, WRONG_SECRET_KEY, REVOKED_KEY):
                for bearer in (False, True):
                    reply = ask(running, key, bearer=bearer)
                    seen += [reply.body, str(reply.headers)]
        for path in ("/metrics", "/readyz", "/livez", "/nowhere"):
            reply = running.get(path)
            seen += [reply.body, str(reply.headers)]
        running.stop()
        seen.append(running.stderr)
    with hub(tmp_path, closed, name="hub-closed") as unreachable:
        seen.append(ask(unreachable).body)
        unreachable.stop()
        seen.append(unreachable.stderr)
    assert any('"event": "upstream"' in text for text in seen)  # the logs were captured
    for text in seen:
        for secret in (FAKE_KEY, FAKE_SECRET, WRONG_SECRET_KEY, "WRONGsecretWRONG", REVOKED_KEY):
            assert secret not in text


@pytest.mark.parametrize("rate", ["0.5", "1"])
async def test_a_flood_at_a_slow_upstream_rate_keeps_a_known_keys_sidecar_ready(
    upstream: Emulator, tmp_path: Path, rate: str
) -> None:
    """At --max-upstream-rate 1 or below the bucket holds one call: the reserve for known keys
    must still exist, or a flood of random keys takes every refresh (and the sidecar goes stale)."""
    with (
        hub(tmp_path, upstream.url, "--max-upstream-rate", rate, "--ttl", "1s") as running,
        sidecar(tmp_path, running.url, "--interval", "200ms", "--stale-after", "4s") as sc,
    ):
        wait_for(lambda: sc.get("/readyz").status == 200, what="the sidecar ready via the hub")
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        statuses: list[int] = []
        async with aiohttp.ClientSession(connector=connector) as session:
            stop = time.monotonic() + 9  # past --stale-after, twice over

            async def flood(worker: int) -> None:
                n = 0
                while time.monotonic() < stop:
                    key = f"lp_test_f{worker}x{n}_RANDOMfakeRANDOM"
                    n += 1
                    headers = {"X-Api-Key": key}
                    async with session.get(running.url + "/v1/whoami", headers=headers) as reply:
                        await reply.read()

            async def probe() -> None:
                while time.monotonic() < stop:
                    status = await asyncio.to_thread(lambda: sc.get("/readyz").status)
                    statuses.append(status)
                    await asyncio.sleep(0.2)

            await asyncio.gather(*(flood(w) for w in range(8)), probe())
        metrics = scrape(running)
    assert len(statuses) >= 10
    assert statuses == [200] * len(statuses)
    assert (sample(metrics, "layers_hub_requests_total", result="rejected") or 0) > 100
