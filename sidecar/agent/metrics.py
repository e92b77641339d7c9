"""Prometheus metrics: a collector that reads the poller's state at scrape time.

Gauges are derived from the State when scraped, so "no sample before the first answer" needs no
bookkeeping; only the request counter and the latency histogram are updated as polls happen,
from the poll loop's events. The sidecar's own process (memory, CPU, open files, start time)
is on the same registry as the standard `process_*` metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..bodies import KNOWN_TIERS
from ..outcome import Outcome
from ..readiness import Event, Reason, State, Verdict
from ..redact import label
from ..runtime.metrics import DURATION_BUCKETS, build_info


class Source(Protocol):
    """What the gauges are derived from: the poller, or anything shaped like it."""

    def snapshot(self) -> State: ...
    def verdict(self) -> Verdict: ...


class StateCollector(Collector):
    def __init__(self, source: Source) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        state, verdict = self._source.snapshot(), self._source.verdict()
        yield _gauge("layers_ready", "1 when /readyz would answer 200.", int(verdict.ready))
        reason = GaugeMetricFamily(
            "layers_readiness_reason",
            "1 for the reason /readyz gives now (ok when ready), 0 for every other reason.",
            labels=["reason"],
        )
        for each in Reason:
            reason.add_metric([each.value], int(each is verdict.reason))
        yield reason
        if state.last_outcome is not None:
            # Known from the first attempt on: whether that attempt could read the key.
            yield _gauge(
                "layers_api_key_available",
                "0 while the key file is missing, empty or unreadable; 1 when the key was read.",
                int(state.last_outcome != Reason.KEY_UNAVAILABLE.value),
            )

        whoami = state.whoami
        if whoami is not None:
            yield _gauge(
                "layers_credit_balance",
                "creditBalance of the last good whoami answer.",
                whoami.credit_balance,
            )
            info = GaugeMetricFamily(
                "layers_whoami_info",
                "Who the key is, from the last good whoami answer.",
                labels=["organization_id", "workspace_id", "organization_name", "api_key_id"],
            )
            # Upstream strings: cleaned when parsed, and shown as labels only if they pass the
            # label filter (a placeholder otherwise), so no value can break a scrape.
            info.add_metric(
                [
                    label(whoami.organization_id),
                    label(whoami.workspace_id),
                    label(whoami.organization_name),
                    label(whoami.api_key_id),
                ],
                1,
            )
            yield info

        tier = GaugeMetricFamily(
            "layers_rate_limit_tier",
            "1 for the key's current rate-limit tier, 0 for the others.",
            labels=["tier"],
        )
        # The known tiers always; an unknown one only while it is current, so the series stay
        # bounded however many values the upstream invents.
        current = label(whoami.rate_limit_tier) if whoami else None
        for name in KNOWN_TIERS:
            tier.add_metric([name], int(name == current))
        if current is not None and current not in KNOWN_TIERS:
            tier.add_metric([current], 1)
        yield tier

        if state.kill_switch is not None:
            yield _gauge(
                "layers_kill_switch",
                "1 while the kill switch is engaged (a 200 flag or a 503 KILL_SWITCH).",
                int(state.kill_switch),
            )
        if state.access_revoked is not None:
            yield _gauge(
                "layers_api_access_revoked",
                "1 while the organization's API access is revoked.",
                int(state.access_revoked),
            )
        if state.last_success_at is not None:
            yield GaugeMetricFamily(
                "layers_whoami_last_success_timestamp_seconds",
                "Unix time of the last ok whoami answer.",
                value=state.last_success_at,
                unit="seconds",
            )
        yield _gauge(
            "layers_whoami_consecutive_failures",
            "Failed polls since the last ok answer.",
            state.consecutive_failures,
        )
        if state.rate_limit_limit is not None:
            yield _gauge(
                "layers_rate_limit_limit",
                "X-RateLimit-Limit of the last answer that sent it.",
                state.rate_limit_limit,
            )
        if state.rate_limit_remaining is not None:
            yield _gauge(
                "layers_rate_limit_remaining",
                "X-RateLimit-Remaining of the last answer that sent it.",
                state.rate_limit_remaining,
            )
        yield build_info()


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class Metrics:
    """The registry of one sidecar, and the two instruments updated as polls happen."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._requests = Counter(
            "layers_whoami_requests",
            "whoami polls by outcome.",
            labelnames=["outcome"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "layers_whoami_request_duration_seconds",
            "Time of each whoami call.",
            unit="seconds",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        for outcome in Outcome:
            # Every outcome present from the start, so rate() and increase() see the first one.
            self._requests.labels(outcome=outcome.value)

    def watch(self, source: Source) -> None:
        """Derives the gauges from `source` at every scrape."""
        self.registry.register(StateCollector(source))

    def observe(self, event: Event) -> None:
        """Counts the whoami call an event carries (an attempt without a key made none)."""
        if event.result is None:
            return
        self._requests.labels(outcome=event.result.outcome.value).inc()
        self._duration.observe(event.elapsed)
