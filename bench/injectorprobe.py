"""The injector's admission latency from a process of its own: paced reviews over one HTTPS
connection, as the API server keeps one open to a webhook.

`python -m bench.injectorprobe URL CAFILE RATE SECONDS REVIEWFILE [NAME]` POSTs the
AdmissionReview in REVIEWFILE to {URL}/mutate at RATE a second for SECONDS (a fresh uid each
time) and prints one JSON line with the latencies and the statuses. A request whose slot has
passed is sent at once, so a slow server shows as latency, not as a lower rate (the rate
achieved is printed too).
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import time
from collections import Counter
from urllib.parse import urlsplit


def probe(
    url: str, cafile: str, rate: float, seconds: float, review: str, name: str = "bench"
) -> dict[str, object]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    context = ssl.create_default_context(cafile=cafile)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=10, context=context)
    template = json.loads(review)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    for slot in range(int(rate * seconds)):
        template["request"]["uid"] = f"{name}-{slot:08d}"
        body = json.dumps(template).encode()
        delay = started + slot / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.perf_counter()
        conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        latencies.append(time.perf_counter() - sent)
        answer = json.loads(data)
        statuses[response.status] += 1
        assert answer["response"]["uid"] == template["request"]["uid"]
    elapsed = time.monotonic() - started
    conn.close()
    return {
        "latencies": latencies,
        "statuses": {str(k): v for k, v in statuses.items()},
        "achieved_rate": len(latencies) / elapsed,
    }


def main() -> None:
    url, cafile, rate, seconds, review_file, *name = sys.argv[1:]
    with open(review_file, encoding="utf-8") as file:
        review = file.read()
    print(json.dumps(probe(url, cafile, float(rate), float(seconds), review, *name)))


if __name__ == "__main__":
    main()
