"""8. The hub beside nginx and Varnish, each configured as the same per-key 5 s cache.

Three servers in front of one `layers-sidecar emulate`, in one run: the hub; nginx with
`proxy_cache` keyed on both key headers, `proxy_cache_valid any 5s` and `proxy_cache_lock`; and
Varnish hashing on both key headers with a 5 s TTL for every answer. nginx and varnishd run as
this suite's own processes, from configuration files in the run's temporary directory, on
loopback ports; each server, the whole process tree, on one core (the load and the emulator on
the other). Each load runs twice per server, servers in turn; a figure is the median of the two.

The loads (`bench/keyload.py`, open loop, latency from the time a request was due):
(a) 1 key, 1,000 sidecars each every 5 s; (b) 1 key, wrk with 64 connections; (c) 1,000 keys,
one sidecar each every 5.1 s, so that every poll is a miss (one exactly every TTL would hit on
the boundary half the time); (d) 2,500 keys, every 5.1 s: about 490 misses a second; (e) the
target: 1,000 keys with 10 sidecars each every 5 s, 2,000 requests and about 190 misses a second,
p99 under 20 ms. Beside them: whether a Bearer caller's 200 reaches a keyless or other-key caller
(with nginx also keyed the obvious way, on X-Api-Key alone), whether the raw key is written to
disk, and the upstream calls in 20 s of 200 requests a second while the upstream answers 429 with
`Retry-After: 30`.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sidecar.testing import Emulator, Process, clean_env, free_port, http, wait_for

from .common import BENCH_DIR, CLIENT_CPU, ROOT, SERVER_CPU, Plan, cpu_seconds, median
from .rows import Row, table

SERVERS: Final = ("hub", "nginx", "varnish")
TTL: Final = 5.0
# Every poll a miss: a key's sidecar comes back just after its entry expired.
MISS_PERIOD: Final = TTL * 1.02
SATURATION_CONNECTIONS: Final = 64
TARGET_P99_MS: Final = 20.0
# A revoked key id: the upstream answers 401, so a 200 to it can only be someone else's.
REVOKED: Final = "revoked1"

# `user`: a master started as root would otherwise run its worker as nobody, which cannot write
# the cache into this run's private directory; as anyone else nginx ignores it.
NGINX_CONF: Final = """
user {user} {group};
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    proxy_cache_path {dir}/cache levels=1:2 keys_zone=whoami:32m max_size=256m inactive=60s
                     use_temp_path=off;
    upstream layers {{ server 127.0.0.1:{upstream}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 1000000;
        location /v1/whoami {{
            proxy_pass http://layers;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache whoami;
            proxy_cache_key "{key}";
            proxy_cache_valid any 5s;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
            add_header X-Cache $upstream_cache_status always;
        }}
    }}
}}
"""
# Both headers, each under its own name, so that no two different credentials share an entry.
NGINX_PER_KEY: Final = "k=$http_x_api_key a=$http_authorization"
NGINX_OBVIOUS: Final = "$http_x_api_key"

VARNISH_VCL: Final = """vcl 4.1;
backend layers {{ .host = "127.0.0.1"; .port = "{upstream}"; }}
sub vcl_recv {{
    # The built-in VCL passes requests that carry Authorization; this cache is per key instead.
    if (req.url ~ "^/v1/whoami") {{ return (hash); }}
    return (pass);
}}
sub vcl_hash {{
    hash_data(req.url);
    hash_data("k=" + req.http.X-Api-Key);
    hash_data("a=" + req.http.Authorization);
    return (lookup);
}}
sub vcl_backend_response {{
    set beresp.ttl = 5s;
    set beresp.grace = 0s;
    return (deliver);
}}
sub vcl_deliver {{
    set resp.http.X-Cache = "MISS";
    if (obj.hits > 0) {{ set resp.http.X-Cache = "HIT"; }}
}}
"""


def fleet_key(row: str, rep: int, i: int) -> str:
    """Obviously fake keys in the upstream's format, distinct per load and repetition."""
    return f"lp_test_{row}{rep}x{i}_FAKEsecretFAKE"


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and every process below it (nginx's worker, varnishd's child)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += cpu_seconds(current)
        except OSError:
            continue  # gone since the listing
        todo.extend(children.get(current, []))
    return total


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    workdir: Path

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)


def _on_core(cpu: int) -> list[str]:
    """A command prefix that starts a process, and every process it forks, on one core."""
    if shutil.which("taskset") and cpu < (os.cpu_count() or 1):
        return ["taskset", "-c", str(cpu)]
    return []


@contextmanager
def _running(
    name: str,
    command: list[str],
    workdir: Path,
    url: str,
    *,
    cpu: int = SERVER_CPU,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """`command` on core `cpu`, in a session of its own. With the scheduler's autogroups (on by
    default) a session shares one weight: the emulator or a server in this suite's session
    would get a slice of a slice on a machine busy with other sessions, and the emulator,
    starved, would make every server look slow."""
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "stdout").open("wb") as out, (workdir / "stderr").open("wb") as err:
        proc = subprocess.Popen(
            [*_on_core(cpu), *command],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=clean_env(**(env or {})),
            cwd=ROOT,
            start_new_session=True,
        )
    server = Server(name, url, proc, workdir)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                text = (workdir / "stderr").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}: {text}")
            # Any answer means it is listening; not /v1/whoami, whose answer a cache would keep.
            http("GET", url + "/", timeout=1)
            return True

        wait_for(up, timeout=30, what=f"{name} to listen")
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: nginx's worker, varnishd's child
        proc.wait(timeout=10)


@contextmanager
def upstream(tmp: Path, name: str = "emulator") -> Iterator[Emulator]:
    """`layers-sidecar emulate` on the client core, in a session of its own (see `_running`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workdir = tmp / f"{name}-{port}"
    command = [sys.executable, "-m", "sidecar", "emulate", "--listen", f"127.0.0.1:{port}"]
    command += ["--log-level", "warning"]
    with _running(name, command, workdir, url, cpu=CLIENT_CPU) as server:
        yield Emulator(Process(server.proc, workdir / "stdout", workdir / "stderr", url), url)


@contextmanager
def start(
    name: str, tmp: Path, upstream: int, *, nginx_key: str = NGINX_PER_KEY
) -> Iterator[Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workdir = tmp / f"{name}-{port}"
    workdir.mkdir(parents=True)
    if name == "hub":
        command = [sys.executable, "-m", "sidecar", "hub", "--ttl", f"{TTL:g}s"]
        command += ["--max-upstream-rate", "100000", "--log-level", "warning"]
        env = {
            "LAYERS_API_URL": f"http://127.0.0.1:{upstream}",
            "LAYERS_SIDECAR_LISTEN": f"127.0.0.1:{port}",
        }
        with _running(name, command, workdir, url, env=env) as server:
            yield server
    elif name.startswith("nginx"):
        conf = workdir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                dir=workdir,
                upstream=upstream,
                port=port,
                key=nginx_key,
                user=pwd.getpwuid(os.geteuid()).pw_name,
                group=grp.getgrgid(os.getegid()).gr_name,
            )
        )
        command = ["nginx", "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"]
        with _running(name, command, workdir, url) as server:
            yield server
    else:
        vcl = workdir / "whoami.vcl"
        vcl.write_text(VARNISH_VCL.format(upstream=upstream))
        # -j none: no privilege separation, which needs the varnish users and root; this is a
        # throw-away instance on loopback, and -F keeps it in the foreground as our child.
        command = ["varnishd", "-F", "-j", "none", "-n", str(workdir / "n")]
        command += ["-a", f"127.0.0.1:{port}", "-f", str(vcl), "-s", "malloc,64m"]
        with _running(name, command, workdir, url) as server:
            yield server


def _keyload(tmp: Path, name: str, load: dict[str, Any], on_window: Any = None) -> dict[str, Any]:
    """Runs bench/keyload.py on the client core; `on_window` is called when its window opens."""
    plan = tmp / f"{name}.json"
    plan.write_text(json.dumps(load))
    command = [*_on_core(CLIENT_CPU), sys.executable, "-m", "bench.keyload", str(plan)]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, cwd=ROOT, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    result: dict[str, Any] | None = None
    for line in proc.stdout:
        data = json.loads(line)
        if data.get("mark") == "window":
            if on_window is not None:
                on_window()
        else:
            result = data
    proc.wait(timeout=30)
    if result is None:
        raise RuntimeError(f"keyload {name} printed no result")
    return result


def paced(
    tmp: Path, server: Server, emu: Emulator, name: str, load: dict[str, Any]
) -> dict[str, Any]:
    """One paced load; the server's CPU and the upstream calls from its window on."""
    marks: dict[str, float] = {}

    def window() -> None:
        marks["cpu"], marks["calls"] = server.cpu(), emu.whoami_requests()
        marks["upstream_cpu"] = cpu_seconds(emu.process.proc.pid)

    result = _keyload(
        tmp, f"{name}-{server.name}", {"url": server.url + "/v1/whoami", **load}, window
    )
    cpu, calls = server.cpu() - marks["cpu"], emu.whoami_requests() - marks["calls"]
    # The emulator is shared by the three servers: when it is the limit, every server waits.
    result["upstream_cpu_share"] = (
        cpu_seconds(emu.process.proc.pid) - marks["upstream_cpu"]
    ) / load["seconds"]
    answered = max(1, result["answered"])
    result["cpu_ms_per_request"] = cpu / answered * 1000
    result["upstream_calls"] = calls
    result["misses_per_s"] = calls / load["seconds"]
    result["cpu_ms_per_miss"] = cpu / calls * 1000 if calls else None
    # The machine is shared: how busy it was says how much to trust the window.
    result["load_average_1m"] = os.getloadavg()[0]
    return result


def saturate(server: Server, key: str, seconds: float) -> dict[str, Any]:
    before = server.cpu()
    command = [*_on_core(CLIENT_CPU), "wrk", "-t1", f"-c{SATURATION_CONNECTIONS}"]
    command += [f"-d{seconds:g}s", "--latency", "-s", str(BENCH_DIR / "wrk-report.lua")]
    command += ["-H", f"X-Api-Key: {key}", server.url + "/v1/whoami"]
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
        start_new_session=True,
    )
    cpu = server.cpu() - before
    line = next(text for text in run.stdout.splitlines() if text.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["cpu_ms_per_request"] = cpu / max(1, result["requests"]) * 1000
    return result


def _get(url: str, headers: dict[str, str]) -> int:
    return http("GET", url + "/v1/whoami", headers=headers, timeout=5).status


def isolation(server: Server, emu: Emulator, tag: str) -> dict[str, Any]:
    """Does a Bearer caller's cached 200 reach a caller without it? Each status as received."""
    good = f"lp_test_iso{tag}_FAKEsecretFAKE"
    other = f"lp_test_{REVOKED}_FAKEsecretFAKE"
    bearer = _get(server.url, {"Authorization": f"Bearer {good}"})
    seen = {
        "bearer_caller": bearer,
        "keyless": _get(server.url, {}),
        "other_key_x_api_key": _get(server.url, {"X-Api-Key": other}),
        "other_key_bearer": _get(server.url, {"Authorization": f"Bearer {other}"}),
    }
    leaked = bearer == 200 and any(v == 200 for k, v in seen.items() if k != "bearer_caller")
    _get(server.url, {"X-Api-Key": good})  # the same key in the other header, for the disk check
    on_disk = any(
        good.encode() in path.read_bytes()
        for path in server.workdir.rglob("*")
        if path.is_file() and path.stat().st_size < 1 << 20
    )
    return {"statuses": seen, "cross_key_200": leaked, "raw_key_on_disk": on_disk}


def rate_limited(plan: Plan, name: str, seconds: float) -> dict[str, Any]:
    """Upstream calls while every answer is a 429 with Retry-After: 30, under 200 req/s."""
    with upstream(plan.tmp, f"emulator-429-{name}") as emu:
        emu.set(failure="rate_limited", retryAfter=30, rateLimitPerMinute=1_000_000_000)
        with start(name, plan.tmp, int(emu.url.rsplit(":", 1)[1])) as server:
            load = {"keys": [fleet_key("rl", 0, 0)], "pods_per_key": 1000, "period": 5.0}
            load |= {"stagger": 0.0, "warmup": 0.0, "seconds": seconds}
            result = paced(plan.tmp, server, emu, "ratelimited", load)
            # Counted from the start: the first call, the one that brought the 429, counts too.
            calls = emu.whoami_requests()
    return {"upstream_calls": calls, "statuses": result["statuses"]}


LOADS: Final = {
    "a": ("1 key, 1,000 sidecars every 5 s", 1, 1000, TTL, 0.0, 1.0),
    "c": ("1,000 keys, one sidecar each every 5.1 s", 1000, 1, MISS_PERIOD, 0.0, 1.0),
    "d": (
        "2,500 keys, one sidecar each every 5.1 s (~490 misses/s)",
        2500,
        1,
        MISS_PERIOD,
        0.0,
        1.0,
    ),
    "e": ("1,000 keys, 10 sidecars each every 5 s (2,000 req/s)", 1000, 10, TTL, TTL, TTL + 0.5),
}


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _ratio(value: float, hub: float) -> str:
    return f"{value / hub:.2f}x" if hub > 0 else "n/a"


def figure_rows(
    figures: dict[str, dict[str, dict[str, float]]], extra: dict[str, Any]
) -> list[dict[str, Any]]:
    """The table: the hub's figure, and nginx's and Varnish's as ratios to it."""
    out: list[dict[str, Any]] = []

    def row(
        figure: str, metric: str, unit: str, load: str, target: str = "", met: Any = None
    ) -> None:
        got = figures[load]
        hub = got["hub"][metric]
        value = (
            f"hub {_num(hub)} {unit}; nginx {_ratio(got['nginx'][metric], hub)} "
            f"({_num(got['nginx'][metric])}); Varnish {_ratio(got['varnish'][metric], hub)} "
            f"({_num(got['varnish'][metric])})"
        )
        out.append({"figure": figure, "target": target, "value": value, "met": met})

    row("(a) 1 key, 1,000 sidecars every 5 s: p99", "p99_ms", "ms", "a")
    row("(a) 1 key, 1,000 sidecars every 5 s: CPU per request", "cpu_ms_per_request", "ms", "a")
    row("(b) 1 key, saturation at 64 connections: req/s", "rps", "req/s", "b")
    row("(b) 1 key, saturation at 64 connections: CPU per request", "cpu_ms_per_request", "ms", "b")
    row("(c) 1,000 keys, one sidecar each every 5.1 s: p99", "p99_ms", "ms", "c")
    row(
        "(c) 1,000 keys, one sidecar each every 5.1 s: CPU per request",
        "cpu_ms_per_request",
        "ms",
        "c",
    )
    row("(c) 1,000 keys, one sidecar each every 5.1 s: upstream calls/s", "misses_per_s", "/s", "c")
    row("(d) 2,500 keys, ~490 misses/s: p99", "p99_ms", "ms", "d")
    row("(d) 2,500 keys, ~490 misses/s: served req/s", "served_rate", "req/s", "d")
    hub_e = figures["e"]["hub"]["p99_ms"]
    row(
        "(e) 1,000 keys, 2,000 req/s, ~190 misses/s, one core: p99",
        "p99_ms",
        "ms",
        "e",
        target=f"hub p99 < {TARGET_P99_MS:g} ms",
        met=hub_e < TARGET_P99_MS,
    )
    row(
        "(e) 1,000 keys, 2,000 req/s, ~190 misses/s: CPU per request",
        "cpu_ms_per_request",
        "ms",
        "e",
    )
    iso = extra["isolation"]
    out.append(
        {
            "figure": "a Bearer caller's 200 served to a keyless or other-key caller",
            "target": "hub: no",
            "value": "; ".join(
                f"{name} {'yes' if got['cross_key_200'] else 'no'}" for name, got in iso.items()
            ),
            "met": not iso["hub"]["cross_key_200"],
        }
    )
    out.append(
        {
            "figure": "raw key written to disk",
            "target": "hub: no",
            "value": "; ".join(
                f"{name} {'yes' if got['raw_key_on_disk'] else 'no'}" for name, got in iso.items()
            ),
            "met": not iso["hub"]["raw_key_on_disk"],
        }
    )
    limited = extra["rate_limited"]
    out.append(
        {
            "figure": "upstream calls in 20 s of 200 req/s while it answers 429, Retry-After: 30",
            "target": "hub: 1",
            "value": "; ".join(f"{name} {got['upstream_calls']}" for name, got in limited.items()),
            "met": limited["hub"]["upstream_calls"] <= 1,
        }
    )
    return out


def section(result: dict[str, Any]) -> list[str]:
    """The suite's rows as they are in its JSON, under what they compare."""
    return [
        "The hub, nginx and Varnish as the same per-key 5 s cache in front of the emulator, "
        "each on one core; medians of two runs (see `bench/hubcompare.py` for the loads).",
        "",
        *table([Row(**row) for row in result["rows"]]),
    ]


def run(plan: Plan) -> dict[str, Any]:
    reps = 2
    seconds = plan.pick(5, 2)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        load: {name: [] for name in SERVERS} for load in ("a", "b", "c", "d", "e")
    }
    extra: dict[str, Any] = {"isolation": {}, "rate_limited": {}}
    with ExitStack() as stack:
        emu = stack.enter_context(upstream(plan.tmp))
        emu.set(rateLimitPerMinute=1_000_000_000, revokedKeyIds=[REVOKED])
        emu_port = int(emu.url.rsplit(":", 1)[1])
        servers = {name: stack.enter_context(start(name, plan.tmp, emu_port)) for name in SERVERS}
        for rep in range(reps):
            for load, (_, keys, pods, period, stagger, warmup) in LOADS.items():
                for name in SERVERS if rep == 0 else reversed(SERVERS):
                    spec = {
                        "keys": [fleet_key(load, rep, i) for i in range(keys)],
                        "pods_per_key": pods,
                        "period": period,
                        "stagger": stagger,
                        "warmup": warmup,
                        "seconds": seconds,
                    }
                    got = paced(plan.tmp, servers[name], emu, f"{load}{rep}", spec)
                    runs[load][name].append(got)
                    print(f"bench: hubcompare {load} {name}: {_brief(got)}", file=sys.stderr)
            for name in SERVERS if rep == 0 else reversed(SERVERS):
                got = saturate(servers[name], fleet_key("b", rep, 0), plan.pick(4, 2))
                runs["b"][name].append(got)
                print(f"bench: hubcompare b {name}: {got['rps']:.0f} req/s", file=sys.stderr)
        for name, server in servers.items():
            extra["isolation"][name] = isolation(server, emu, name)
        with start("nginx-obvious", plan.tmp, emu_port, nginx_key=NGINX_OBVIOUS) as obvious:
            extra["isolation"]["nginx keyed on X-Api-Key alone"] = isolation(obvious, emu, "obv")
    limited_s = plan.pick(20, 5)
    # The three at once, each with its own emulator: 20 s instead of 60.
    with ThreadPoolExecutor(len(SERVERS)) as pool:
        limited = {name: pool.submit(rate_limited, plan, name, limited_s) for name in SERVERS}
        extra["rate_limited"] = {name: future.result() for name, future in limited.items()}
    metrics = (
        "p99_ms",
        "cpu_ms_per_request",
        "rps",
        "served_rate",
        "cpu_ms_per_miss",
        "misses_per_s",
    )
    figures = {
        load: {
            name: {
                metric: median([r[metric] for r in got])
                for metric in metrics
                if metric in got[0] and got[0][metric] is not None
            }
            for name, got in by_server.items()
        }
        for load, by_server in runs.items()
    }
    return {
        "rows": figure_rows(figures, extra),
        "figures": figures,
        "loads": {k: v[0] for k, v in LOADS.items()},
        "runs": runs,
        **extra,
    }


def _brief(got: dict[str, Any]) -> str:
    return (
        f"p99 {got['p99_ms']:.1f} ms, {got['served_rate']:.0f}/{got['scheduled_rate']:.0f} req/s, "
        f"{got['misses_per_s']:.0f} misses/s, CPU {got['cpu_ms_per_request']:.3f} ms/req, "
        f"late p99 {got['late_p99_ms']:.1f} ms, errors {got['errors']}, "
        f"emulator {got['upstream_cpu_share']:.0%} of a core, load {got['load_average_1m']:.1f}"
    )
