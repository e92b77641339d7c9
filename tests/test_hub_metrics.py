"""The hub's registry, scraped in process from a fake source: per-key gauges with public labels
only, one series per label pair, the counters present from the start, and the build info."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import generate_latest

from sidecar import __version__
from sidecar.hub.cache import KeyFacts
from sidecar.hub.metrics import RESULTS, HubMetrics
from sidecar.outcome import Outcome
from tests.support import sample

FACTS = KeyFacts(
    api_key_id="c2037bb9-354d-4662-96b7-97a28ad6b6e1",
    organization_id="2481fa5c-a404-44ed-a561-565392499abc",
    credit_balance=2540,
    kill_switch=False,
    access_revoked=True,
)


class FakeHub:
    def __init__(self, facts: Iterable[KeyFacts] = (), count: int = 0) -> None:
        self.facts = list(facts)
        self.count = count

    def key_count(self) -> int:
        return self.count

    def key_facts(self) -> Iterable[KeyFacts]:
        return self.facts


def scrape(metrics: HubMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_per_key_gauges_carry_only_public_labels() -> None:
    metrics = HubMetrics()
    metrics.watch(FakeHub([FACTS], count=1))
    text = scrape(metrics)
    labels = {"api_key_id": FACTS.api_key_id, "organization_id": FACTS.organization_id}
    assert sample(text, "layers_hub_keys") == 1
    assert sample(text, "layers_hub_credit_balance", **labels) == 2540
    assert sample(text, "layers_hub_kill_switch", **labels) == 0
    assert sample(text, "layers_hub_api_access_revoked", **labels) == 1
    assert sample(text, "layers_sidecar_build_info", version=__version__) == 1


def test_two_keys_with_the_same_public_labels_are_one_series() -> None:
    metrics = HubMetrics()
    metrics.watch(FakeHub([FACTS, FACTS], count=2))
    lines = [line for line in scrape(metrics).splitlines() if line.startswith("layers_hub_kill")]
    assert len(lines) == 1


def test_a_label_that_fails_the_filter_never_breaks_a_scrape() -> None:
    metrics = HubMetrics()
    bad = KeyFacts("\ud800", "a\nb", 1, True, False)
    metrics.watch(FakeHub([bad], count=1))
    assert sample(scrape(metrics), "layers_hub_kill_switch", api_key_id="invalid") == 1


def test_counters_start_at_zero_for_every_result_and_outcome_and_count_as_told() -> None:
    metrics = HubMetrics()
    text = scrape(metrics)
    for result in RESULTS:
        assert sample(text, "layers_hub_requests_total", result=result) == 0
    for outcome in Outcome:
        assert sample(text, "layers_hub_upstream_requests_total", outcome=outcome.value) == 0
    metrics.count("hit")
    metrics.observe_upstream(Outcome.TIMEOUT, 0.2)
    text = scrape(metrics)
    assert sample(text, "layers_hub_requests_total", result="hit") == 1
    assert sample(text, "layers_hub_upstream_requests_total", outcome="timeout") == 1
    assert sample(text, "layers_hub_upstream_request_duration_seconds_count") == 1


def test_without_a_source_there_are_no_key_gauges() -> None:
    assert "layers_hub_keys" not in scrape(HubMetrics())
