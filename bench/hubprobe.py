"""The hub's latency from a process of its own: paced whoami requests over one connection.

`python -m bench.hubprobe URL RATE SECONDS KEY [KEY ...]` GETs {URL}/v1/whoami at RATE a second
for SECONDS, the keys in turn, and prints one JSON line with the latencies. The fleet's own
process is busy running N pollers, so the latency its pollers see includes their own event
loop's lag; this probe's does not.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from collections import Counter
from itertools import cycle
from urllib.parse import urlsplit


def probe(url: str, rate: float, seconds: float, keys: list[str]) -> dict[str, object]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    for slot, key in zip(range(int(rate * seconds)), cycle(keys), strict=False):
        delay = started + slot / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.perf_counter()
        conn.request("GET", "/v1/whoami", headers={"X-Api-Key": key})
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - sent)
        statuses[response.status] += 1
    conn.close()
    return {"latencies": latencies, "statuses": {str(k): v for k, v in statuses.items()}}


def main() -> None:
    url, rate, seconds, *keys = sys.argv[1:]
    print(json.dumps(probe(url, float(rate), float(seconds), keys)))


if __name__ == "__main__":
    main()
