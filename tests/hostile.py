"""A hostile upstream: a raw asyncio socket server that answers with exactly the bytes a test sets.

No HTTP library in between, so a test can send what no well-behaved server would: duplicate JSON
names, lone surrogates, a malformed status line, a header with a control character, a body that
never matches its Content-Length. Runs its own event loop in a thread, on loopback, and records
every request it receives (head only, bounded) with the time it arrived.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from tests.support import WHOAMI

# The answer to one request: bytes, or a function of the request head that returns them.
Reply = bytes | Callable[[bytes], bytes]

MAX_HEAD = 64 * 1024


def response(
    status: int = 200,
    body: bytes | str | Any = b"",
    *,
    headers: Mapping[str, str] | None = None,
    reason: str = "Whatever",
    raw_headers: bytes = b"",
    close: bool = True,
) -> bytes:
    """One HTTP/1.1 answer with Content-Length and Connection: close (keep-alive when not
    `close`); JSON for non-bytes bodies."""
    if isinstance(body, str):
        body = body.encode("utf-8", errors="surrogatepass")
    elif not isinstance(body, bytes):
        body = json.dumps(body).encode()
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head += [f"Content-Length: {len(body)}", f"Connection: {'close' if close else 'keep-alive'}"]
    return (
        "\r\n".join(head).encode("utf-8", errors="surrogatepass")
        + b"\r\n"
        + raw_headers
        + (b"\r\n" + body)
    )


@dataclass
class Request:
    head: bytes
    at: float

    def header(self, name: str) -> str | None:
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


@dataclass
class Hostile:
    url: str = ""
    reply: Reply = b""
    requests: list[Request] = field(default_factory=list)
    # Seconds to keep each connection open after the reply is written: a body that stalls.
    hold_open: float = 0.0
    # Read the next request on the same connection after each reply (the reply must then say
    # keep-alive): a connection the client pools and reuses.
    keep_alive: bool = False
    # Written on the connection this long after the reply, unasked (a misbehaving upstream or
    # proxy): a response that lands on an idle pooled connection. `late_written` counts them.
    late: Reply | None = None
    late_after: float = 0.05
    late_written: int = 0

    def set(self, reply: Reply) -> int:
        """Answers every later request with `reply`; returns how many requests came before."""
        count = len(self.requests)
        self.reply = reply
        return count

    def since(self, mark: int) -> list[Request]:
        return self.requests[mark:]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._exchange(reader, writer)
        finally:
            # Also when cancelled at shutdown (a keep-alive connection still open).
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                async with asyncio.timeout(10):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                TimeoutError,
                ConnectionError,
            ):
                writer.close()
                return
            self.requests.append(Request(head[:MAX_HEAD], time.monotonic()))
            reply = self.reply
            data = reply(head) if callable(reply) else reply
            with suppress(ConnectionError):
                writer.write(data)
                await writer.drain()
            late = self.late
            if late is not None:
                await asyncio.sleep(self.late_after)
                with suppress(ConnectionError):
                    writer.write(late(head) if callable(late) else late)
                    await writer.drain()
                self.late_written += 1
            if not self.keep_alive:
                break
        if self.hold_open:
            with suppress(ConnectionError, asyncio.IncompleteReadError):
                async with asyncio.timeout(self.hold_open):
                    await reader.read()  # until the client gives up, or hold_open passes
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()


@contextmanager
def hostile(reply: Reply = b"") -> Iterator[Hostile]:
    server = Hostile(reply=reply)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Future[None] | None = None

    async def main() -> None:
        nonlocal stop
        stop = loop.create_future()
        listener = await asyncio.start_server(server._serve, "127.0.0.1", 0, limit=MAX_HEAD)
        server.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
        started.set()
        async with listener:
            await stop
        # Connections still held open (keep-alive, hold_open) end with the loop, not after it.
        serving = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in serving:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)
        await asyncio.sleep(0)  # the closed transports' last callbacks

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield server
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(10)
        loop.close()


# The healthy whoami body the hostile cases start from.
GOOD = WHOAMI


def good(**changes: Any) -> bytes:
    return response(200, {**GOOD, **changes}, headers={"X-Request-Id": "req_good"})


def members(*pairs: tuple[str, Any], pad: int = 0) -> bytes:
    """A JSON object written member by member, so a name may come twice; `pad` adds a filler
    member of that many bytes at the end."""
    parts = [f"{json.dumps(name)}: {json.dumps(value)}" for name, value in pairs]
    if pad:
        parts.append(f'"padding": "{"x" * pad}"')
    return ("{" + ", ".join(parts) + "}").encode()


def leaks(text: str, secret: str, shortest: int = 6) -> list[str]:
    """Every run of `shortest` characters of `secret` found in `text`."""
    return [
        secret[i : i + shortest]
        for i in range(len(secret) - shortest + 1)
        if secret[i : i + shortest] in text
    ]
