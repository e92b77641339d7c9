"""What a whoami body says: the fields of a 200 (`Whoami`), or an error's code, message, request
id and details.minTier. Every string comes back cleaned (`redact.clean`). Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from .jsonscan import Ambiguous, Decoded, decode
from .redact import clean
from .secret import Secret

# How much of each upstream string is kept: identifiers, names and free text.
ID_LIMIT: Final = 128
NAME_LIMIT: Final = 256

KNOWN_TIERS: Final = ("standard", "pilot", "partner", "internal")


@dataclass(frozen=True)
class Whoami:
    organization_id: str
    workspace_id: str
    organization_name: str
    rate_limit_tier: str
    kill_switch: bool
    api_access_revoked: bool
    api_key_id: str
    credit_balance: float


_FIELDS: Final = {
    "organizationId": str,
    "workspaceId": str,
    "organizationName": str,
    "rateLimitTier": str,
    "killSwitch": bool,
    "apiAccessRevoked": bool,
    "apiKeyId": str,
    "creditBalance": float,
}


def _finite(value: object) -> float | None:
    """A JSON number as a finite float; None for anything else (bools, 1e400, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return number if math.isfinite(number) else None


def parse_whoami(
    body: bytes, key: Secret | None = None, decoded: Decoded | None = None
) -> Whoami | str:
    """A well-formed 200 body, or why it is not one. Unknown fields are ignored.

    String fields come back cleaned (`redact.clean`): an upstream that echoes the key, or sends
    a newline or a lone surrogate in a name, cannot carry it into /status, a label or a log.
    `decoded` is this body's `jsonscan.decode`, when the caller has it already.
    """
    decoded = decode(body) if decoded is None else decoded
    if decoded.error is not None:
        if isinstance(decoded.error, Ambiguous):
            return clean(f"body is ambiguous: {decoded.error}", key)
        return "body is not JSON"
    data = decoded.value
    if not isinstance(data, dict):
        return f"body is a JSON {type(data).__name__}, not an object"
    values: dict[str, Any] = {}
    for name, kind in _FIELDS.items():
        if name not in data:
            return f"field {name} is missing"
        value = data[name]
        if kind is float:
            value = _finite(value)
            if value is None:
                return f"field {name} is not a finite number"
        elif not isinstance(value, kind):
            return f"field {name} is {type(value).__name__}, not {kind.__name__}"
        elif isinstance(value, str):
            value = clean(value, key, limit=NAME_LIMIT)
        values[name] = value
    return Whoami(
        organization_id=values["organizationId"],
        workspace_id=values["workspaceId"],
        organization_name=values["organizationName"],
        rate_limit_tier=values["rateLimitTier"],
        kill_switch=values["killSwitch"],
        api_access_revoked=values["apiAccessRevoked"],
        api_key_id=values["apiKeyId"],
        credit_balance=values["creditBalance"],
    )


@dataclass(frozen=True)
class ErrorBody:
    code: str | None = None
    message: str = ""
    request_id: str | None = None
    min_tier: str | None = None


def error_body(body: bytes, key: Secret | None, decoded: Decoded | None = None) -> ErrorBody:
    """code, message, requestId and details.minTier of an error body, cleaned, where present.
    `decoded` as for `parse_whoami`."""
    decoded = decode(body) if decoded is None else decoded
    if decoded.error is not None:
        return ErrorBody()
    data = decoded.value
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ErrorBody()

    def text(value: object, limit: int) -> str | None:
        return None if not isinstance(value, str) else clean(value, key, limit=limit)

    details = error.get("details")
    return ErrorBody(
        code=text(error.get("code"), ID_LIMIT),
        message=text(error.get("message"), NAME_LIMIT) or "",
        request_id=text(error.get("requestId"), ID_LIMIT),
        min_tier=text(details.get("minTier"), ID_LIMIT) if isinstance(details, dict) else None,
    )
