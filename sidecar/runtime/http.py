"""Answer helpers shared by every role's handlers."""

from __future__ import annotations

from aiohttp import web


def text(body: str, status: int = 200) -> web.Response:
    """A plain-text answer, one line or more, ending in a newline (curl shows it cleanly)."""
    return web.Response(text=body + "\n", status=status)
