"""What every role's registry shares: one build-info gauge."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from sidecar import __version__
from sidecar.runtime.metrics import BuildInfo


def test_the_build_info_gauge_names_the_version() -> None:
    registry = CollectorRegistry()
    registry.register(BuildInfo())
    text = generate_latest(registry).decode()
    assert f'layers_sidecar_build_info{{version="{__version__}"}} 1.0' in text
