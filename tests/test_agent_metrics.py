"""/metrics: names, no false zeros, tiers, and `promtool check metrics` on the real output."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as text_string_to_openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from sidecar import __version__
from sidecar.agent.metrics import Metrics
from sidecar.outcome import Outcome, Result
from sidecar.readiness import Event, Reason, State, Verdict
from tests.support import WHOAMI_PARSED as WHOAMI
from tests.support import FakeSource
from tests.tools import tool


def scrape(source: FakeSource, metrics: Metrics | None = None) -> dict[str, float]:
    if metrics is None:
        metrics = Metrics()
        metrics.watch(source)
    text = generate_latest(metrics.registry).decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_before_the_first_answer_there_is_no_false_zero() -> None:
    samples = scrape(FakeSource())
    assert samples["layers_ready"] == 0
    for absent in (
        "layers_credit_balance",
        "layers_kill_switch",
        "layers_api_access_revoked",
        "layers_whoami_last_success_timestamp_seconds",
        "layers_rate_limit_limit",
        "layers_rate_limit_remaining",
    ):
        assert absent not in samples, absent
    assert not any(name.startswith("layers_whoami_info") for name in samples)
    # Every outcome is there from the start, so increase() sees the first failure.
    assert samples['layers_whoami_requests_total{outcome="kill_switch"}'] == 0
    assert samples['layers_sidecar_build_info{version="' + _version() + '"}'] == 1


def _version() -> str:
    return __version__


def test_after_a_good_answer() -> None:
    source = FakeSource(
        State(
            whoami=WHOAMI,
            kill_switch=False,
            access_revoked=False,
            last_success_at=1_800_000_000.0,
            consecutive_failures=0,
            rate_limit_limit=600,
            rate_limit_remaining=599,
        ),
        Verdict(True, Reason.OK),
    )
    samples = scrape(source)
    assert samples["layers_ready"] == 1
    assert samples["layers_credit_balance"] == 2540
    assert samples["layers_kill_switch"] == 0
    assert samples["layers_api_access_revoked"] == 0
    assert samples["layers_whoami_last_success_timestamp_seconds"] == 1_800_000_000
    assert samples["layers_rate_limit_limit"] == 600
    assert samples["layers_rate_limit_remaining"] == 599
    info = (
        'layers_whoami_info{api_key_id="key-1",organization_id="org-1",'
        'organization_name="Acme Growth",workspace_id="ws-1"}'
    )
    assert samples[info] == 1


def tiers_of(state: State, metrics: Metrics | None = None) -> dict[str, float]:
    """The tier series of one scrape; of `metrics` when given (its source must be `state`'s)."""
    samples = scrape(FakeSource(state, Verdict(True, Reason.OK)), metrics)
    return {
        key.split('"')[1]: value
        for key, value in samples.items()
        if key.startswith("layers_rate_limit_tier")
    }


def tier_series(metrics: Metrics) -> dict[str, float]:
    """The tier gauge of one collection of the registry, without rendering the whole scrape."""
    for family in metrics.registry.collect():
        if family.name == "layers_rate_limit_tier":
            return {sample.labels["tier"]: sample.value for sample in family.samples}
    raise AssertionError("no layers_rate_limit_tier")


def test_tier_gauge_shows_an_unknown_tier_only_while_it_is_current() -> None:
    platinum = State(whoami=replace(WHOAMI, rate_limit_tier="platinum"))
    assert tiers_of(platinum) == {
        "standard": 0,
        "pilot": 0,
        "partner": 0,
        "internal": 0,
        "platinum": 1,
    }
    # A thousand invented tiers later, scraped from the same registry, the series are the four
    # known ones and the current one.
    source = FakeSource(platinum, Verdict(True, Reason.OK))
    metrics = Metrics()
    metrics.watch(source)
    for n in range(1000):
        source.state = State(whoami=replace(WHOAMI, rate_limit_tier=f"tier-{n}"))
        assert len(tier_series(metrics)) == 5
    source.state = State(whoami=replace(WHOAMI, rate_limit_tier="partner"))
    assert tiers_of(source.state, metrics) == {
        "standard": 0,
        "pilot": 0,
        "partner": 1,
        "internal": 0,
    }


@pytest.mark.parametrize("bad", ["\ud800", "a\nb", "x" * 500, "lp_[redacted]"])
def test_a_string_that_fails_the_label_filter_never_breaks_a_scrape(bad: str) -> None:
    whoami = replace(WHOAMI, organization_name=bad, rate_limit_tier=bad)
    samples = scrape(FakeSource(State(whoami=whoami), Verdict(True, Reason.OK)))
    info = [key for key in samples if key.startswith("layers_whoami_info")]
    assert len(info) == 1
    assert 'organization_name="invalid"' in info[0]
    assert tiers_of(State(whoami=whoami))["invalid"] == 1


def polled(outcome: Outcome, elapsed: float) -> Event:
    return Event(State(), Verdict(False, Reason.STARTING), Result(outcome), elapsed=elapsed)


def test_requests_and_durations_are_counted() -> None:
    source = FakeSource()
    metrics = Metrics()
    metrics.watch(source)
    metrics.observe(polled(Outcome.OK, 0.02))
    metrics.observe(polled(Outcome.TIMEOUT, 10.0))
    metrics.observe(Event(State(), Verdict(False, Reason.KEY_UNAVAILABLE), key_error="gone"))
    samples = scrape(source, metrics)
    assert samples['layers_whoami_requests_total{outcome="ok"}'] == 1
    assert samples['layers_whoami_requests_total{outcome="timeout"}'] == 1
    assert samples["layers_whoami_request_duration_seconds_count"] == 2
    assert samples['layers_whoami_request_duration_seconds_bucket{le="0.025"}'] == 1
    assert not any(name.endswith("_created") for name in samples)


def kill_switch_metrics() -> Metrics:
    source = FakeSource(
        State(whoami=WHOAMI, kill_switch=True, access_revoked=False, last_success_at=1.0),
        Verdict(False, Reason.KILL_SWITCH),
    )
    metrics = Metrics()
    metrics.watch(source)
    metrics.observe(polled(Outcome.KILL_SWITCH, 0.01))
    return metrics


@pytest.mark.tools
def test_promtool_accepts_the_exposition() -> None:
    checked = subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=generate_latest(kill_switch_metrics().registry),
        capture_output=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == b"", checked.stdout  # no lint findings either


def test_the_openmetrics_rendering_parses() -> None:
    # promtool's linter reads only the classic text format; OpenMetrics is checked by its parser.
    text = generate_openmetrics(kill_switch_metrics().registry).decode()  # type: ignore[no-untyped-call]
    assert text.endswith("# EOF\n")
    families = text_string_to_openmetrics_families(text)  # type: ignore[no-untyped-call]
    names = {family.name for family in families}
    assert {"layers_kill_switch", "layers_whoami_requests"} <= names


def test_the_readiness_reason_names_why_with_every_reason_present() -> None:
    source = FakeSource(State(last_outcome="key_unavailable"), Verdict(False, Reason.STARTING))
    samples = scrape(source)
    reasons = {
        key.split('"')[1]: value
        for key, value in samples.items()
        if key.startswith("layers_readiness_reason{")
    }
    assert reasons == {reason.value: int(reason is Reason.STARTING) for reason in Reason}
    source.current = Verdict(True, Reason.OK)
    assert scrape(source)['layers_readiness_reason{reason="ok"}'] == 1


def test_the_key_availability_follows_the_last_attempt() -> None:
    assert "layers_api_key_available" not in scrape(FakeSource())  # no attempt yet
    missing = FakeSource(State(last_outcome="key_unavailable"))
    assert scrape(missing)["layers_api_key_available"] == 0
    answered = FakeSource(State(last_outcome="server_error"))
    assert scrape(answered)["layers_api_key_available"] == 1


def test_the_process_metrics_are_on_the_sidecar_s_registry() -> None:
    samples = scrape(FakeSource())
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert samples[name] > 0, name


def test_openmetrics_states_the_unit_where_the_name_has_one() -> None:
    text = generate_openmetrics(kill_switch_metrics().registry).decode()  # type: ignore[no-untyped-call]
    assert "# UNIT layers_whoami_request_duration_seconds seconds" in text
    assert "# UNIT layers_whoami_last_success_timestamp_seconds seconds" in text
