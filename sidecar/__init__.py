"""layers-readiness: watch a Layers Partner API key through GET /v1/whoami."""

from __future__ import annotations

# The one place the version is written; pyproject.toml reads it from here. A literal, not an
# importlib.metadata look-up: that costs ~30 ms on every start of an init container.
__version__ = "0.1.0"

__all__ = ["__version__"]
