"""The Alertmanager configuration docs/monitoring.md gives, a real Alertmanager (Debian's
`prometheus-alertmanager`) to run it, and a webhook receiver that records what reaches a person.

- `documented_config()` is the YAML block of docs/monitoring.md that starts `# alertmanager.yml`,
  as a user copies it.
- `for_test(config, hook)` changes it only where a test must: every receiver delivers to `hook`
  (a path per receiver name), and the root route's timings are seconds instead of minutes.
- `alertmanager(tmp, config)` runs it on a free loopback port, clustering off.
- `Webhook` is an HTTP server on loopback that keeps every notification it is sent.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.monitoring import daemon
from tests.support import free_port, http
from tests.tools import tool

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "monitoring.md"
MARKER = "# alertmanager.yml"

# Seconds where a real configuration has minutes: what the test's root route sets (the documented
# routes inherit them). group_wait gathers the pods of one key whose alerts fire an evaluation
# apart into the same first notification.
TEST_TIMINGS = {"group_wait": "4s", "group_interval": "2s", "repeat_interval": "1h"}


def documented_config() -> dict[str, Any]:
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    found = [block for block in blocks if block.startswith(MARKER + "\n")]
    assert len(found) == 1, f"{DOCS.name} must give one `{MARKER}` block, not {len(found)}"
    config: dict[str, Any] = yaml.safe_load(found[0])
    return config


def documented_text() -> str:
    return yaml.safe_dump(documented_config(), sort_keys=False)


def receiver_names(config: dict[str, Any]) -> list[str]:
    return [receiver["name"] for receiver in config["receivers"]]


def for_test(config: dict[str, Any], hook: str) -> dict[str, Any]:
    changed = copy.deepcopy(config)
    for receiver in changed["receivers"]:
        assert set(receiver) == {"name"}, "the documented receivers leave integrations to the user"
        receiver["webhook_configs"] = [
            {"url": f"{hook}/{receiver['name']}", "send_resolved": True, "max_alerts": 0}
        ]
    for key in TEST_TIMINGS:
        assert key not in changed["route"], f"the documented root route sets {key}"
    changed["route"].update(TEST_TIMINGS)
    return changed


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("amtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


@contextmanager
def alertmanager(tmp: Path, config: dict[str, Any]) -> Iterator[str]:
    """Alertmanager on a free loopback port, its state under `tmp`; stopped on the way out."""
    binary = tool("prometheus-alertmanager")
    config_file = tmp / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    checked = amtool("check-config", str(config_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port()
    with daemon(
        "alertmanager",
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.path={tmp / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # one instance, no gossip port
            "--log.level=warn",
        ],
        port,
        tmp / "alertmanager.log",
    ) as url:
        yield url


def post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    """Alerts sent the way Prometheus sends them (API v2)."""
    reply = http("POST", f"{url}/api/v2/alerts", body=alerts)
    assert reply.status == 200, reply.body


def alert(labels: dict[str, str], *, lasting: float) -> dict[str, Any]:
    """One alert as Prometheus sends it: firing for `lasting` seconds from now (0: resolved)."""
    now = datetime.now(UTC)
    return {
        "labels": labels,
        "annotations": {"summary": f"{labels['alertname']} posted by the test"},
        "startsAt": (now - timedelta(seconds=1)).isoformat(),
        "endsAt": (now + timedelta(seconds=lasting)).isoformat(),
    }


def alert_states(url: str) -> list[dict[str, Any]]:
    reply = http("GET", f"{url}/api/v2/alerts")
    assert reply.status == 200, reply.body
    found: list[dict[str, Any]] = reply.json()
    return found


class Webhook:
    """Every notification POSTed to it, with the receiver (the path) it was meant for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with webhook._lock:
                    webhook._received.append({"path": self.path.lstrip("/"), **body})
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads the notifications, not an access log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received)


def alertnames(notification: dict[str, Any]) -> set[str]:
    return {a["labels"]["alertname"] for a in notification["alerts"]}
