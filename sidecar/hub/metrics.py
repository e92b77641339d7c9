"""The hub's Prometheus metrics: counters updated as requests happen, gauges read at scrape time.

Per-key gauges carry only the public `api_key_id` and `organization_id`: one series per key
instead of one per pod, and never the key. Their number is bounded by --max-keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..outcome import Outcome
from ..redact import label
from ..runtime.metrics import DURATION_BUCKETS, build_info
from .cache import KeyFacts

RESULTS = ("hit", "miss", "coalesced", "rejected")


class Source(Protocol):
    """What the gauges are derived from: the hub, or anything shaped like it."""

    def key_count(self) -> int: ...
    def key_facts(self) -> Iterable[KeyFacts]: ...


class KeysCollector(Collector):
    def __init__(self, source: Source) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "layers_hub_keys", "Distinct keys the hub remembers.", value=self._source.key_count()
        )
        labels = ["api_key_id", "organization_id"]
        credit = GaugeMetricFamily(
            "layers_hub_credit_balance",
            "creditBalance of each key's last good whoami answer.",
            labels=labels,
        )
        kill = GaugeMetricFamily(
            "layers_hub_kill_switch",
            "1 while a key's kill switch is engaged (a 200 flag or a 503 KILL_SWITCH).",
            labels=labels,
        )
        revoked = GaugeMetricFamily(
            "layers_hub_api_access_revoked",
            "1 while a key's organization has its API access revoked.",
            labels=labels,
        )
        seen: set[tuple[str, str]] = set()
        for facts in self._source.key_facts():
            # Two tags with the same public labels would be two series with one name: keep one.
            names = (label(facts.api_key_id), label(facts.organization_id))
            if names in seen:
                continue
            seen.add(names)
            credit.add_metric(list(names), facts.credit_balance)
            kill.add_metric(list(names), int(facts.kill_switch))
            revoked.add_metric(list(names), int(facts.access_revoked))
        yield credit
        yield kill
        yield revoked
        yield build_info()


class HubMetrics:
    """The hub's registry and the instruments updated as requests and upstream calls happen."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "layers_hub_requests",
            "whoami requests answered by the hub, by how: hit, miss, coalesced or rejected.",
            labelnames=["result"],
            registry=self.registry,
        )
        self._upstream = Counter(
            "layers_hub_upstream_requests",
            "Calls from the hub to the upstream, by outcome.",
            labelnames=["outcome"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "layers_hub_upstream_request_duration_seconds",
            "Time of each call from the hub to the upstream.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        # Every series bound once: looking a label up costs more than the increment itself.
        self._by_result = {result: self._requests.labels(result=result) for result in RESULTS}
        self._by_outcome = {
            outcome: self._upstream.labels(outcome=outcome.value) for outcome in Outcome
        }
        ProcessCollector(registry=self.registry)

    def watch(self, source: Source) -> None:
        """Derives the per-key gauges from `source` at every scrape."""
        self.registry.register(KeysCollector(source))

    def count(self, result: str) -> None:
        self._by_result[result].inc()

    def observe_upstream(self, outcome: Outcome, seconds: float) -> None:
        self._by_outcome[outcome].inc()
        self._duration.observe(seconds)

    def handler(self) -> Handler:
        return make_aiohttp_handler(self.registry)
