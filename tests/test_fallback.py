"""`--fallback-api-url` for `serve` and `check`: a dead hub never turns a pod not ready, and an
HTTP answer through the hub (a 5xx included) is never retried against the fallback.

Real processes over loopback: the emulator as Layers, a real hub, a real sidecar. The sidecars
run with `--stale-after 0`, so a single failed poll would show in `/readyz` and in the counters.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import pytest

from tests.support import (
    FAKE_KEY,
    FAKE_SECRET,
    Emulator,
    Process,
    clean_env,
    command,
    emulator,
    free_port,
    hub,
    sample,
    sidecar,
    start,
    wait_for,
)

pytestmark = pytest.mark.e2e

# A generous --timeout: on a loaded machine a slow answer must not count as a failed poll here.
# A short --fallback-interval: these tests count polls through the fallback.
STRICT = (
    "--interval",
    "200ms",
    "--timeout",
    "1s",
    "--stale-after",
    "0",
    "--fallback-interval",
    "200ms",
)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Emulator]:
    with emulator(tmp_path) as running:
        running.set(rateLimitPerMinute=1_000_000)
        yield running


@pytest.fixture
def spare(tmp_path: Path) -> Iterator[Emulator]:
    """A second Layers, to see whether anything reached the fallback."""
    spare_tmp = tmp_path / "spare"
    spare_tmp.mkdir()
    with emulator(spare_tmp) as running:
        running.set(rateLimitPerMinute=1_000_000)
        yield running


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections and never answers: a hung hub."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def polls(sc: Process, outcome: str) -> float:
    return sample(sc.get("/metrics").body, "layers_whoami_requests_total", outcome=outcome) or 0


def no_failed_poll(sc: Process) -> None:
    status = sc.get("/status").json()
    assert status["consecutiveFailures"] == 0
    assert status["ready"] is True
    for outcome in ("network_error", "timeout", "server_error"):
        assert polls(sc, outcome) == 0


def test_an_unreachable_api_url_uses_the_fallback_in_the_same_poll(
    upstream: Emulator, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with sidecar(tmp_path, closed, *STRICT, LAYERS_FALLBACK_API_URL=upstream.url) as sc:
        wait_for(lambda: polls(sc, "ok") >= 5, what="five good polls through the fallback")
        no_failed_poll(sc)
        warnings = [e for e in sc.log_events() if e["event"].startswith("api url unreachable")]
        assert len(warnings) == 1  # at the start of the run, then once a minute
        assert warnings[0]["level"] == "warning"


def test_a_hung_api_url_times_out_into_the_fallback(
    upstream: Emulator, silent: str, tmp_path: Path
) -> None:
    with sidecar(tmp_path, silent, *STRICT, LAYERS_FALLBACK_API_URL=upstream.url) as sc:
        wait_for(lambda: polls(sc, "ok") >= 3, what="three good polls after timeouts")
        no_failed_poll(sc)
        assert sc.get("/livez").status == 200  # two calls in one poll is not a stall


def test_a_hub_killed_mid_run_turns_no_pod_not_ready(upstream: Emulator, tmp_path: Path) -> None:
    with hub(tmp_path, upstream.url, "--ttl", "1s") as running:
        port = running.url.rsplit(":", 1)[1]
        with sidecar(tmp_path, running.url, *STRICT, LAYERS_FALLBACK_API_URL=upstream.url) as sc:
            wait_for(lambda: polls(sc, "ok") >= 3, what="good polls through the hub")
            through_hub = upstream.whoami_requests()
            running.stop(signal.SIGKILL)
            before = polls(sc, "ok")
            wait_for(lambda: polls(sc, "ok") >= before + 10, what="ten polls with the hub dead")
            no_failed_poll(sc)
            assert upstream.whoami_requests() >= through_hub + 10  # now direct, every poll

            # The hub comes back on the same address: the sidecar returns to it by itself.
            env = clean_env(
                LAYERS_API_URL=upstream.url,
                LAYERS_SIDECAR_LISTEN=f"127.0.0.1:{port}",
                LAYERS_HUB_TTL="1m",
            )
            back = start(
                ["hub"],
                env=env,
                tmp=tmp_path,
                name="hub-again",
                url=running.url,
                ready_path="/livez",
            )
            try:

                def via_hub() -> bool:
                    metrics = back.get("/metrics").body
                    return (sample(metrics, "layers_hub_requests_total", result="hit") or 0) >= 3

                wait_for(via_hub, what="polls through the restarted hub")
                direct = upstream.whoami_requests()
                before = polls(sc, "ok")
                wait_for(lambda: polls(sc, "ok") >= before + 5, what="five more polls")
                assert upstream.whoami_requests() == direct  # all answered by the hub's cache
                no_failed_poll(sc)
            finally:
                back.stop(signal.SIGKILL)


def test_a_5xx_through_the_hub_is_never_retried_against_the_fallback(
    upstream: Emulator, spare: Emulator, tmp_path: Path
) -> None:
    upstream.set(failure="server_error")
    with (
        hub(tmp_path, upstream.url, "--ttl", "100ms") as running,
        sidecar(tmp_path, running.url, *STRICT, LAYERS_FALLBACK_API_URL=spare.url) as sc,
    ):
        wait_for(lambda: polls(sc, "server_error") >= 3, what="three 5xx polls")
        assert sc.get("/readyz").status == 503
        assert spare.whoami_requests() == 0


@pytest.mark.parametrize(
    "hub_answer",
    [{"failure": "unavailable"}, {"failure": "kill_switch"}, {"delay": 2}],
    ids=["503", "503-kill-switch", "hub-504"],
)
def test_every_answer_from_the_hub_stands(
    upstream: Emulator, spare: Emulator, tmp_path: Path, hub_answer: dict[str, object]
) -> None:
    upstream.set(**hub_answer)
    with (
        hub(tmp_path, upstream.url, "--ttl", "100ms", "--timeout", "200ms") as running,
        sidecar(tmp_path, running.url, *STRICT, LAYERS_FALLBACK_API_URL=spare.url) as sc,
    ):
        wait_for(
            lambda: polls(sc, "server_error") + polls(sc, "kill_switch") >= 3,
            what="three polls answered by the hub",
        )
        assert sc.get("/readyz").status == 503
        assert spare.whoami_requests() == 0


def run_check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("check", *args),
        env=clean_env(LAYERS_API_KEY=FAKE_KEY, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_uses_the_fallback_when_the_hub_is_down(upstream: Emulator) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    done = run_check("--api-url", closed, "--fallback-api-url", upstream.url, "--deadline", "0")
    assert done.returncode == 0, done.stderr
    assert upstream.whoami_requests() == 1
    assert FAKE_SECRET not in done.stderr


def test_check_does_not_use_the_fallback_on_a_5xx_from_the_hub(
    upstream: Emulator, spare: Emulator, tmp_path: Path
) -> None:
    upstream.set(failure="server_error")
    with hub(tmp_path, upstream.url) as running:
        done = run_check(
            "--api-url", running.url, "--fallback-api-url", spare.url, "--deadline", "0"
        )
    assert done.returncode == 1
    assert spare.whoami_requests() == 0


def test_check_with_the_fallback_never_runs_past_its_deadline(silent: str) -> None:
    # Both URLs hang: the hub's call takes the whole --deadline, and the fallback gets only
    # what is left of it (nothing), not another --timeout.
    with socket.socket() as second:
        second.bind(("127.0.0.1", 0))
        second.listen(8)
        fallback = f"http://127.0.0.1:{second.getsockname()[1]}"
        started = time.monotonic()
        done = run_check(
            "--api-url",
            silent,
            "--fallback-api-url",
            fallback,
            "--deadline",
            "1s",
            "--timeout",
            "20s",
        )
        took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert took < 15, f"check ran {took:.1f}s with --deadline 1s"  # the bug: 1s + another 20s


# Fallback mode: N sidecars whose hub gives no answer cost Layers no more than N direct ones.

FLEET = 3


def polled(sc: Process) -> bool:
    return polls(sc, "ok") >= 1


def not_ready(sc: Process) -> bool:
    return sc.get("/readyz").status == 503


PACED = ("--interval", "100ms", "--timeout", "500ms", "--stale-after", "0")
FALLBACK_INTERVAL = 2.0


@pytest.mark.parametrize("dead", ["refused", "black-holed"])
def test_a_dead_hub_costs_layers_no_more_than_direct_mode(
    upstream: Emulator, silent: str, tmp_path: Path, dead: str
) -> None:
    hub_url = f"http://127.0.0.1:{free_port()}" if dead == "refused" else silent
    with ExitStack() as stack:
        fleet = []
        for n in range(FLEET):
            home = tmp_path / f"pod{n}"
            home.mkdir()
            fleet.append(
                stack.enter_context(
                    sidecar(
                        home,
                        hub_url,
                        *PACED,
                        LAYERS_FALLBACK_API_URL=upstream.url,
                        LAYERS_FALLBACK_INTERVAL=f"{FALLBACK_INTERVAL:g}s",
                    )
                )
            )
        for sc in fleet:
            wait_for(partial(polled, sc), what="a first poll via the fallback")
        window = 8.0
        before, started = upstream.whoami_requests(), time.monotonic()
        time.sleep(window)  # the measurement itself: calls over a fixed window
        calls = upstream.whoami_requests() - before
        took = time.monotonic() - started
        # Direct mode at --interval = --fallback-interval: FLEET x took / interval (and the
        # poll each sidecar may have started just before the window). Old code: ~80 at 100ms.
        assert calls <= FLEET * (took / FALLBACK_INTERVAL + 1), calls
        assert calls >= FLEET * (took / (FALLBACK_INTERVAL * 1.1 + 0.5) - 1), calls
        for sc in fleet:
            no_failed_poll(sc)
            assert sc.get("/livez").status == 200

        # A kill switch is still seen within --fallback-interval + 2 x --timeout.
        upstream.set(failure="kill_switch")
        switched = time.monotonic()
        for sc in fleet:
            wait_for(
                partial(not_ready, sc),
                timeout=FALLBACK_INTERVAL + 2 * 0.5 + 3,
                what="the kill switch seen through the fallback",
            )
        assert time.monotonic() - switched <= FALLBACK_INTERVAL * 1.1 + 2 * 0.5 + 1.0


def test_back_at_the_hub_at_its_first_answer(upstream: Emulator, tmp_path: Path) -> None:
    port = free_port()
    hub_url = f"http://127.0.0.1:{port}"
    with sidecar(
        tmp_path,
        hub_url,
        *PACED,
        LAYERS_FALLBACK_API_URL=upstream.url,
        LAYERS_FALLBACK_INTERVAL=f"{FALLBACK_INTERVAL:g}s",
    ) as sc:
        wait_for(lambda: polls(sc, "ok") >= 1, what="a first poll via the fallback")
        env = clean_env(
            LAYERS_API_URL=upstream.url,
            LAYERS_SIDECAR_LISTEN=f"127.0.0.1:{port}",
            LAYERS_HUB_TTL="1m",
        )
        back = start(["hub"], env=env, tmp=tmp_path, name="hub", url=hub_url, ready_path="/livez")
        try:
            returned = time.monotonic()

            def hub_requests() -> float:
                metrics = back.get("/metrics").body
                return sum(
                    sample(metrics, "layers_hub_requests_total", result=result) or 0
                    for result in ("hit", "miss", "coalesced")
                )

            wait_for(lambda: hub_requests() >= 1, what="the sidecar back at the hub")
            # Within one --fallback-interval (and its jitter) of the hub's return...
            assert time.monotonic() - returned <= FALLBACK_INTERVAL * 1.1 + 1.0
            # ...then at the hub's cadence (100ms), the fallback no longer called.
            direct = upstream.whoami_requests()
            first = hub_requests()
            wait_for(lambda: hub_requests() >= first + 10, timeout=5, what="ten polls via the hub")
            assert upstream.whoami_requests() == direct
            no_failed_poll(sc)
        finally:
            back.stop(signal.SIGKILL)
