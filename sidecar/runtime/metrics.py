"""What every role's Prometheus registry shares: the build-info gauge and the duration buckets.

Each role keeps its own `CollectorRegistry` (never the global one); these are the pieces they
have in common.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from prometheus_client import disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__

# The *_created series only add noise for a single long-lived process; this is an application, so
# the process-wide switch is ours to flip.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Whoami is one small JSON answer: most calls take tens of milliseconds; the top buckets catch a
# struggling upstream before the timeout does.
DURATION_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def build_info() -> GaugeMetricFamily:
    """`layers_sidecar_build_info{version}`: the same series for every role."""
    build = GaugeMetricFamily(
        "layers_sidecar_build_info", "1; the running version.", labels=["version"]
    )
    build.add_metric([__version__], 1)
    return build


class BuildInfo(Collector):
    """Registers build_info on a registry."""

    def collect(self) -> Iterator[Metric]:
        yield build_info()
