"""The real command, as users run it: processes over loopback, steered through the emulator."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar import __version__
from tests.support import (
    FAKE_KEY,
    FAKE_SECRET,
    OTHER_KEY,
    Emulator,
    Process,
    clean_env,
    command,
    emulator,
    free_port,
    http,
    mount_secret,
    sidecar,
    start,
    wait_for,
)
from tests.tools import tool

pytestmark = pytest.mark.e2e


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Emulator]:
    with emulator(tmp_path) as running:
        yield running


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def no_secret(*texts: str) -> None:
    for text in texts:
        assert FAKE_SECRET not in text
        assert FAKE_KEY not in text


# --help, --version and configuration errors.


@pytest.mark.parametrize("subcommand", [[], ["serve"], ["check"], ["emulate"], ["demo"], ["hub"]])
def test_help_explains_and_shows_no_key(subcommand: list[str]) -> None:
    done = run(*subcommand, "--help", LAYERS_API_KEY=FAKE_KEY)
    assert done.returncode == 0
    assert "usage: layers-sidecar" in done.stdout
    no_secret(done.stdout, done.stderr)
    if subcommand == ["check"]:
        assert "LAYERS_SIDECAR_DEADLINE" in done.stdout
        assert "5 kill switch" in done.stdout
        # check makes no poll loop and reads the key once: its help must not say otherwise.
        assert "re-read on every poll" not in done.stdout
        assert "time between polls" not in done.stdout
    # The hub's own variables come first, the shared ones after; nobody else names them.
    for hub_variable in ("LAYERS_HUB_API_URL", "LAYERS_HUB_LISTEN", "LAYERS_HUB_TIMEOUT"):
        assert (hub_variable in " ".join(done.stdout.split())) == (subcommand == ["hub"])
    if subcommand == ["hub"]:
        assert "LAYERS_HUB_TIMEOUT, else LAYERS_SIDECAR_TIMEOUT" in " ".join(done.stdout.split())


@pytest.mark.parametrize("subcommand", [[], ["serve"], ["check"], ["emulate"], ["demo"], ["hub"]])
def test_version(subcommand: list[str]) -> None:
    # On every command too: `layers-sidecar serve --version` is what people type in a pod.
    done = run(*subcommand, "--version")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(rf"layers-sidecar {re.escape(__version__)}\n", done.stdout)


@pytest.mark.parametrize("subcommand", ["serve", "check", "hub"])
def test_an_unknown_flag_names_its_command(subcommand: str) -> None:
    done = run(subcommand, "--no-such-flag", LAYERS_API_KEY=FAKE_KEY)
    assert done.returncode == 2
    assert done.stderr.startswith(f"layers-sidecar {subcommand}: unrecognized arguments: ")
    assert "--no-such-flag" in done.stderr


def test_json_logs_carry_severity_beside_level(upstream: Emulator) -> None:
    upstream.set(killSwitch=True)
    lines = [json.loads(line) for line in check(upstream, "--deadline", "0")[1].splitlines()]
    assert [(line["level"], line["severity"]) for line in lines] == [("error", "ERROR")]
    assert list(lines[0])[:4] == ["timestamp", "level", "severity", "event"]


def test_check_wait_holds_through_a_kill_switch_and_passes_within_one_interval(
    upstream: Emulator,
) -> None:
    upstream.set(killSwitch=True)
    proc = subprocess.Popen(
        command("check", "--wait", "--interval", "1s"),
        env=clean_env(LAYERS_API_KEY=FAKE_KEY, LAYERS_API_URL=upstream.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Still waiting after several hard-stop answers: no exit 5.
        wait_for(lambda: upstream.whoami_requests() >= 3, what="three answers of the switch")
        assert proc.poll() is None
        cleared = time.monotonic()
        upstream.set(killSwitch=False)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert time.monotonic() - cleared < 1 + 1  # one --interval, and a little for the answer
    events = [json.loads(line) for line in stderr.splitlines()]
    assert [(e["event"], e.get("reason")) for e in events] == [
        ("check waiting", "kill_switch"),
        ("check passed", "ok"),
    ]


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["serve", "--interval", "soon"], {"LAYERS_API_KEY": FAKE_KEY}, "--interval"),
        (["serve"], {"LAYERS_API_KEY": FAKE_KEY, "LAYERS_SIDECAR_TIMEOUT": "0"}, "LAYERS_SIDECAR"),
        (["check", "--api-key-file", "/k"], {"LAYERS_API_KEY": FAKE_KEY}, "LAYERS_API_KEY"),
        (["check"], {}, "LAYERS_API_KEY"),
        (["check"], {"LAYERS_API_KEY": ""}, "LAYERS_API_KEY"),
        (["serve", "--listen", "nowhere"], {"LAYERS_API_KEY": FAKE_KEY}, "--listen"),
        (["check", "--api-url", "api.layers.com"], {"LAYERS_API_KEY": FAKE_KEY}, "--api-url"),
        (["check"], {"LAYERS_API_KEY": FAKE_KEY, "LAYERS_AUTH_SCHEME": "basic"}, "LAYERS_AUTH"),
        (["emulate", "--scenario", "/does/not/exist.json"], {}, "--scenario"),
        (["emulate", "--listen", "x"], {}, "--listen"),
        (["demo", "--emulator-listen", "x"], {}, "--emulator-listen"),
        (["demo"], {"LAYERS_EMULATOR_LISTEN": "x"}, "LAYERS_EMULATOR_LISTEN"),
        (["demo"], {"LAYERS_EMULATOR_SCENARIO": "/nope.json"}, "LAYERS_EMULATOR_SCENARIO"),
        (["serve", "--interval", "-1s"], {"LAYERS_API_KEY": FAKE_KEY}, "--interval: '-1s'"),
        (["check", "--min-credits", "abc"], {"LAYERS_API_KEY": FAKE_KEY}, "--min-credits"),
        (["check", "--min-credits", "-5"], {"LAYERS_API_KEY": FAKE_KEY}, "--min-credits: '-5'"),
        (["serve"], {"LAYERS_API_KEY": FAKE_KEY, "LAYERS_SIDECAR_QUITQUITQUIT": "maybe"}, "LAYERS"),
        (["serve", "--no-such-flag"], {"LAYERS_API_KEY": FAKE_KEY}, ""),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], named: str
) -> None:
    done = run(*args, **env)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    if named:
        assert lines[0].startswith(f"layers-sidecar {args[0]}: {named}")
    else:  # a usage mistake: argparse's message, on one line, without the usage block
        assert lines[0].startswith("layers-sidecar"), lines[0]
    assert "Traceback" not in done.stderr
    no_secret(done.stdout, done.stderr)


def test_a_port_in_use_is_one_line_and_exit_2(upstream: Emulator) -> None:
    port = upstream.url.rsplit(":", 1)[1]
    done = run(
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        LAYERS_API_KEY=FAKE_KEY,
        LAYERS_API_URL=upstream.url,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"layers-sidecar serve: --listen: cannot listen on 127.0.0.1:{port}: address already in use"
    ]


def test_the_demo_names_its_emulator_port_when_that_is_busy(upstream: Emulator) -> None:
    port = upstream.url.rsplit(":", 1)[1]
    done = run("demo", "--emulator-listen", f"127.0.0.1:{port}", "--listen", "127.0.0.1:0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"layers-sidecar demo: --emulator-listen: cannot listen on 127.0.0.1:{port}: "
        "address already in use"
    ]


# check: every exit code.


def check(upstream: Emulator, *args: str, key: str = FAKE_KEY, **env: str) -> tuple[int, str]:
    done = run("check", *args, LAYERS_API_KEY=key, LAYERS_API_URL=upstream.url, **env)
    no_secret(done.stdout, done.stderr)
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    ("patch", "code", "reason"),
    [
        ({}, 0, "ok"),
        ({"failure": "unauthenticated"}, 3, "unauthenticated"),
        ({"failure": "not_found"}, 3, "client_error"),
        ({"failure": "redirect"}, 3, "client_error"),
        ({"failure": "billing_exhausted"}, 4, "billing_exhausted"),
        ({"killSwitch": True}, 5, "kill_switch"),
        ({"failure": "kill_switch"}, 5, "kill_switch"),
        ({"apiAccessRevoked": True}, 5, "access_revoked"),
        ({"creditBalance": 10}, 6, "credits_low"),
    ],
)
def test_check_exit_codes(
    upstream: Emulator, patch: dict[str, object], code: int, reason: str
) -> None:
    upstream.set(**patch)
    got, stderr = check(upstream, "--min-credits", "100")
    assert got == code, stderr
    final = [json.loads(line) for line in stderr.splitlines()][-1]
    assert final["event"] == ("check passed" if code == 0 else "check failed")
    assert final["exitCode"] == code
    assert final["reason"] == reason
    # Hard stops end at once: one request, no retry loop.
    assert upstream.whoami_requests() == 1


def test_check_retries_transients_until_the_deadline_then_exits_1(upstream: Emulator) -> None:
    upstream.set(failure="server_error")
    started = time.monotonic()
    got, stderr = check(upstream, "--deadline", "3s", "--interval", "1s")
    elapsed = time.monotonic() - started
    assert got == 1, stderr
    assert upstream.whoami_requests() >= 3  # back-off from about a second, capped by --interval
    assert elapsed < 3 + 5  # the deadline, plus the interpreter's start-up
    last = json.loads(stderr.splitlines()[-1])
    # The last line names what happened, not "starting": the outcome, the deadline, the URL.
    assert last["event"] == "check failed"
    # What the last attempt got: the 500, or, on a loaded machine, no answer in the little time
    # the deadline left it (its timeout is cut to what is left).
    assert last["reason"] in ("server_error", "timeout")
    assert "--deadline 3s" in last["detail"]
    assert last["url"] == upstream.url + "/v1/whoami"
    retries = [json.loads(line) for line in stderr.splitlines()[:-1]]
    assert {r["event"] for r in retries} == {"check retrying"}
    assert any(r.get("status") == 500 and "HTTP 500" in r["detail"] for r in retries)


def test_check_with_deadline_0_makes_one_attempt(upstream: Emulator) -> None:
    upstream.set(failure="server_error")
    got, _ = check(upstream, "--deadline", "0")
    assert got == 1
    assert upstream.whoami_requests() == 1


def test_check_recovers_when_the_upstream_does(upstream: Emulator, tmp_path: Path) -> None:
    upstream.set(failure="unavailable")
    proc = subprocess.Popen(
        command("check", "--deadline", "20s", "--interval", "1s"),
        env=clean_env(LAYERS_API_KEY=FAKE_KEY, LAYERS_API_URL=upstream.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: upstream.whoami_requests() >= 2, what="a retry")
    upstream.set(failure=None)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr


def test_check_times_out_a_slow_upstream(upstream: Emulator) -> None:
    upstream.set(delay=5)
    got, stderr = check(upstream, "--deadline", "0", "--timeout", "300ms")
    assert got == 1
    assert json.loads(stderr.splitlines()[-1])["reason"] == "timeout"


def test_check_with_a_missing_key_file_is_a_configuration_error(
    upstream: Emulator, tmp_path: Path
) -> None:
    done = run(
        "check",
        "--api-key-file",
        str(tmp_path / "absent"),
        LAYERS_API_URL=upstream.url,
    )
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    assert upstream.whoami_requests() == 0


def test_check_sends_bearer_when_asked(upstream: Emulator) -> None:
    got, _ = check(upstream, "--auth-scheme", "bearer")
    assert got == 0
    assert upstream.stats()["lastAuthScheme"] == "bearer"


# serve against the emulator.


def ready(process: Process) -> int:
    return process.get("/readyz").status


def test_serve_follows_the_kill_switch_both_ways(upstream: Emulator, tmp_path: Path) -> None:
    with sidecar(tmp_path, upstream.url) as served:
        wait_for(lambda: ready(served) == 200, what="ready")
        upstream.set(killSwitch=True)
        wait_for(lambda: ready(served) == 503, what="not ready on the kill switch")
        assert served.get("/readyz").body == "not ready: kill_switch\n"
        assert served.get("/livez").status == 200  # a restart cannot clear a kill switch
        upstream.set(killSwitch=False)
        wait_for(lambda: ready(served) == 200, what="ready again, without a restart")
        events = served.log_events()
    changes = [
        (e["event"], e.get("reason")) for e in events if e["event"] in ("ready", "not ready")
    ]
    assert changes == [("ready", "ok"), ("not ready", "kill_switch"), ("ready", "ok")]
    errors = [e for e in events if e["level"] == "error"]
    assert errors[0]["apiKeyId"]
    assert errors[0]["organizationId"] == "2481fa5c-a404-44ed-a561-565392499abc"
    assert errors[0]["requestId"].startswith("req_")
    for event in events:
        assert {"timestamp", "level", "event"} <= set(event)


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ({"apiAccessRevoked": True}, "access_revoked"),
        ({"failure": "unauthenticated"}, "unauthenticated"),
        ({"failure": "billing_exhausted"}, "billing_exhausted"),
        ({"failure": "kill_switch"}, "kill_switch"),
        ({"failure": "not_found"}, "client_error"),
    ],
)
def test_serve_hard_stops(
    upstream: Emulator, tmp_path: Path, patch: dict[str, object], reason: str
) -> None:
    with sidecar(tmp_path, upstream.url) as served:
        wait_for(lambda: ready(served) == 200, what="ready")
        upstream.set(**patch)
        wait_for(lambda: served.get("/status").json()["reason"] == reason, what=reason)
        assert ready(served) == 503
        # Still polling at the interval (200ms), not in a tight retry loop.
        before = upstream.whoami_requests()
        wait_for(lambda: upstream.whoami_requests() >= before + 2, what="two more polls")
        no_secret(served.stderr, served.stdout)


def test_transient_failures_keep_ready_until_stale(upstream: Emulator, tmp_path: Path) -> None:
    with sidecar(tmp_path, upstream.url, "--stale-after", "1500ms") as served:
        wait_for(lambda: ready(served) == 200, what="ready")
        upstream.set(failure="server_error")
        wait_for(lambda: served.get("/status").json()["lastOutcome"] == "server_error", what="5xx")
        assert ready(served) == 200  # the last good verdict holds for --stale-after
        wait_for(lambda: ready(served) == 503, timeout=5, what="stale")
        assert served.get("/status").json()["reason"] == "stale"
        upstream.set(failure=None)
        wait_for(lambda: ready(served) == 200, what="ready again")


def test_status_and_metrics_of_a_live_sidecar(upstream: Emulator, tmp_path: Path) -> None:
    upstream.set(rateLimitTier="platinum", creditBalance=1234.5)
    with sidecar(tmp_path, upstream.url, "--min-credits", "100") as served:
        wait_for(lambda: ready(served) == 200, what="ready")
        status = served.get("/status").json()
        assert status["ready"] is True
        assert status["rateLimitTier"] == "platinum"
        assert status["creditBalance"] == 1234.5
        assert status["killSwitch"] is False
        assert status["lastRequestId"].startswith("req_")
        assert status["lastSuccessAt"].endswith("Z")
        assert status["whoamiUrl"] == f"{upstream.url.rstrip('/')}/v1/whoami"
        assert status["version"] == __version__
        metrics = served.get("/metrics").body
        assert "layers_credit_balance 1234.5" in metrics
        assert 'layers_rate_limit_tier{tier="platinum"} 1.0' in metrics
        assert 'layers_rate_limit_tier{tier="standard"} 0.0' in metrics
        assert "layers_rate_limit_limit 600.0" in metrics
        checked = subprocess.run(
            [tool("promtool"), "check", "metrics"], input=metrics, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stderr
        no_secret(metrics, json.dumps(status))


def test_probes_and_scrapes_never_reach_the_upstream(upstream: Emulator, tmp_path: Path) -> None:
    with sidecar(tmp_path, upstream.url, "--interval", "1h") as served:
        wait_for(lambda: ready(served) == 200, what="the first poll")
        before = upstream.whoami_requests()
        for _ in range(50):
            for path in ("/readyz", "/readyz?verbose", "/livez", "/status", "/metrics"):
                served.get(path)
        assert upstream.whoami_requests() == before == 1


def test_a_429_is_respected(upstream: Emulator, tmp_path: Path) -> None:
    upstream.set(failure="rate_limited", retryAfter=2)
    with sidecar(tmp_path, upstream.url) as served:
        wait_for(lambda: upstream.whoami_requests() >= 1, what="the first poll")
        first = time.monotonic()
        wait_for(lambda: upstream.whoami_requests() >= 2, timeout=6, what="the second poll")
        # At 200ms intervals there would be ten polls in 2 s; Retry-After allowed one.
        assert time.monotonic() - first >= 1.5
        assert served.get("/status").json()["lastOutcome"] == "rate_limited"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_serve_quickly_with_a_request_in_flight(
    upstream: Emulator, tmp_path: Path, sig: signal.Signals
) -> None:
    upstream.set(delay=30)
    with sidecar(tmp_path, upstream.url, "--timeout", "60s") as served:
        wait_for(lambda: upstream.whoami_requests() >= 1, what="a request in flight")
        started = time.monotonic()
        served.proc.send_signal(sig)
        code = served.proc.wait(timeout=5)
        elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 2
    assert served.log_events()[-1]["event"] == "stopping"


def test_a_rotated_key_file_is_used_from_the_next_poll(upstream: Emulator, tmp_path: Path) -> None:
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    mount_secret(secret_dir, FAKE_KEY, 1)
    upstream.set(revokedKeyIds=["k1"])
    with sidecar(
        tmp_path, upstream.url, "--api-key-file", str(secret_dir / "api-key"), key=None
    ) as served:
        wait_for(lambda: served.get("/status").json()["reason"] == "unauthenticated", what="401")
        mount_secret(secret_dir, OTHER_KEY, 2)
        wait_for(lambda: ready(served) == 200, what="ready with the rotated key")
        assert upstream.stats()["lastKeyId"] == "k2"

        # A Secret that goes missing is a clear log line and not ready, never a crash.
        (secret_dir / "..data").unlink()
        wait_for(lambda: served.get("/status").json()["reason"] == "key_unavailable", what="gone")
        assert served.proc.poll() is None
        mount_secret(secret_dir, OTHER_KEY, 3)
        wait_for(lambda: ready(served) == 200, what="ready once the Secret is back")
        events = served.log_events()
    assert any(e["event"] == "api key changed" for e in events)
    unavailable = [e for e in events if e.get("reason") == "key_unavailable"]
    assert unavailable
    assert unavailable[0]["level"] == "error"
    assert "does not exist" in unavailable[0]["detail"]
    no_secret(served.stderr)


def test_the_key_never_leaks_in_any_scenario(upstream: Emulator, tmp_path: Path) -> None:
    with sidecar(tmp_path, upstream.url, LAYERS_SIDECAR_TIMEOUT="300ms") as served:
        for patch in (
            {},
            {"failure": "unauthenticated"},
            {"failure": "billing_exhausted"},
            {"failure": "rate_limited", "retryAfter": 0},
            {"failure": "server_error"},
            {"failure": "garbage"},
            {"failure": "reset"},
            {"failure": None, "delay": 1},
        ):
            upstream.set(**patch)
            count = upstream.whoami_requests()
            wait_for(lambda c=count: upstream.whoami_requests() > c, what=str(patch))  # type: ignore[misc]
            no_secret(
                served.get("/status").body,
                served.get("/metrics").body,
                served.get("/readyz?verbose").body,
            )
    no_secret(served.stderr, served.stdout)


def test_console_logs_on_request(upstream: Emulator, tmp_path: Path) -> None:
    with sidecar(tmp_path, upstream.url, LAYERS_SIDECAR_LOG_FORMAT="console") as served:
        wait_for(lambda: ready(served) == 200, what="ready")
    assert "ready" in served.stderr
    assert not served.stderr.lstrip().startswith("{")


# The demo, driven with the very curl lines it prints.


def test_the_demo_prints_curl_lines_that_work(tmp_path: Path) -> None:
    sidecar_port, emulator_port = free_port(), free_port()
    url = f"http://127.0.0.1:{sidecar_port}"
    demo = start(
        [
            "demo",
            "--listen",
            f"127.0.0.1:{sidecar_port}",
            "--emulator-listen",
            f"127.0.0.1:{emulator_port}",
            "--interval",
            "200ms",
            # The banner's low-credits line names this flag.
            "--min-credits",
            "100",
        ],
        env=clean_env(),
        tmp=tmp_path,
        name="demo",
        url=url,
        ready_path="/livez",
    )
    try:
        wait_for(lambda: http("GET", url + "/readyz").status == 200, what="the demo ready")
        curls = [
            line.strip() for line in demo.stdout.splitlines() if line.strip().startswith("curl")
        ]
        engage = next(c for c in curls if '"killSwitch": true' in c)
        clear = next(c for c in curls if '"killSwitch": false' in c)

        def curl(line: str) -> str:
            done = subprocess.run(shlex.split(line), capture_output=True, text=True, check=True)
            return done.stdout

        assert curl(next(c for c in curls if "verbose" in c)).endswith("readyz check passed\n")
        curl(engage)
        wait_for(lambda: http("GET", url + "/readyz").status == 503, what="503 after the flip")
        curl(clear)
        wait_for(lambda: http("GET", url + "/readyz").status == 200, what="200 after clearing")
        assert "layers-sidecar demo --min-credits 100" in demo.stdout
        curl(next(c for c in curls if '"creditBalance"' in c))
        wait_for(lambda: http("GET", url + "/readyz").status == 503, what="503 on low credits")
        assert "credits_low" in http("GET", url + "/readyz").body
    finally:
        assert demo.stop() == 0
    assert os.path.getsize(demo.stderr_path) > 0


# Import per command: what each command loads.


def imported_by(*args: str, **env: str) -> set[str]:
    done = subprocess.run(
        [*command(*args)[:1], "-X", "importtime", *command(*args)[1:]],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if "|" in line}


def test_importing_the_cli_loads_nothing_but_the_package() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import sidecar.cli"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if "|" in line]
    # Everything after the interpreter's own start-up: the package, the exit codes and the
    # module, no more.
    assert names[names.index("sidecar") :] == ["sidecar", "sidecar.exits", "sidecar.cli"], names


def test_check_never_loads_the_server_the_metrics_or_the_emulator(upstream: Emulator) -> None:
    modules = imported_by("check", LAYERS_API_KEY=FAKE_KEY, LAYERS_API_URL=upstream.url)
    assert "sidecar.agent.check" in modules
    loaded = {
        name
        for name in modules
        if name.split(".")[0] == "prometheus_client"
        or name.startswith(("sidecar.runtime", "sidecar.hub", "sidecar.emulator"))
        or name in ("aiohttp.web", "sidecar.agent.probes", "sidecar.agent.metrics")
        or name in ("sidecar.agent.serve", "sidecar.testing")
    }
    assert loaded == set()


def test_console_logs_never_print_none(upstream: Emulator) -> None:
    upstream.set(failure="unauthenticated")
    got, stderr = check(upstream, "--log-format", "console")
    assert got == 3
    assert "None" not in stderr
    assert "keyFingerprint=" in stderr  # the key named before any answer named it
