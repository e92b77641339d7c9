"""How the key travels in a request, both ways: the header the agent sends, and the reader the
hub and the emulator use for the caller's key, as Layers reads it. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from .secret import Secret
from .values import AuthScheme


def auth_headers(key: Secret, scheme: AuthScheme) -> dict[str, str]:
    if scheme is AuthScheme.BEARER:
        return {"Authorization": f"Bearer {key.reveal()}"}
    return {"X-Api-Key": key.reveal()}


def presented_key(headers: Mapping[str, str]) -> tuple[str | None, AuthScheme | None]:
    """The caller's key and how it came: X-Api-Key first, `Authorization: Bearer` as the
    fallback (the token stripped); (None, None) when neither is there. An X-Api-Key header
    is the key whatever it holds, even empty: judging it is the caller's business."""
    if "X-Api-Key" in headers:
        return headers["X-Api-Key"], AuthScheme.X_API_KEY
    kind, _, token = headers.get("Authorization", "").partition(" ")
    if kind.lower() == "bearer" and token:
        return token.strip(), AuthScheme.BEARER
    return None, None
