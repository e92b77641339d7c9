"""The upstream page's Python boot check (`boot_check.py`, with requests), as a script.

Verbatim but for the base URL, which comes from LAYERS_API_URL so that the benchmark can point
it at the emulator, and the `__main__` block that runs it.
"""

from __future__ import annotations

import os
from typing import Any

import requests

API_URL = os.environ.get("LAYERS_API_URL", "https://api.layers.com")


def assert_key_healthy() -> dict[str, Any]:
    res = requests.get(
        f"{API_URL}/v1/whoami",
        headers={"X-Api-Key": os.environ["LAYERS_API_KEY"]},
        timeout=10,
    )
    res.raise_for_status()
    me: dict[str, Any] = res.json()

    if me.get("killSwitch") or me.get("apiAccessRevoked"):
        raise RuntimeError(
            f"api access blocked: killSwitch={me.get('killSwitch')} "
            f"apiAccessRevoked={me.get('apiAccessRevoked')}"
        )

    print(
        f"key healthy — org={me['organizationId']} "
        f"name={me['organizationName']} tier={me['rateLimitTier']}"
    )
    return me


if __name__ == "__main__":
    assert_key_healthy()
