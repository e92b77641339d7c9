"""The HTTPS edge of `injector`: POST /mutate, /livez, /readyz, /metrics.

Thin on purpose: the answer is `review.answer` (pure); this module reads a bounded body,
counts the result and keeps the certificate fresh. Listening, the connection cap, idle close and
signals are the shared server pieces of `serve` and `hub`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.aiohttp import make_aiohttp_handler

from .. import __version__
from ..options import ConfigError
from ..runtime.http import text
from ..runtime.lifecycle import serving
from ..runtime.metrics import BuildInfo
from ..runtime.tls import load_into, server_context
from ..settings import Settings
from .options import wiring_of
from .review import ERROR, INVALID, RESULTS, ReviewError, answer
from .wiring import Wiring

Log = structlog.typing.FilteringBoundLogger

# An AdmissionReview of a CREATE holds one Pod, and the API server stores objects up to 1.5 MiB;
# twice that leaves room for the review around it, and nothing larger is read.
MAX_BODY: Final = 3 * 1024 * 1024
# How often the certificate files are looked at: a renewed Secret reaches the pod's volume
# within the kubelet's sync period (about a minute), and new handshakes then use it.
CERT_CHECK_EVERY: Final = 10.0
# Reviews take well under a millisecond; the top buckets catch a starved process before the
# API server's timeoutSeconds does.
DURATION_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class InjectorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._reviews = Counter(
            "layers_injector_reviews",
            "AdmissionReviews answered, by result: patched, unchanged (not annotated, opted out "
            "or already wired), unwirable (admitted unwired, with a warning), invalid (4xx), "
            "error (5xx).",
            labelnames=["result"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "layers_injector_review_duration_seconds",
            "Time to answer one AdmissionReview, body read to answer built.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        for result in RESULTS:
            self._reviews.labels(result=result)
        ProcessCollector(registry=self.registry)
        self.registry.register(BuildInfo())

    def count(self, result: str, seconds: float) -> None:
        self._reviews.labels(result=result).inc()
        self._duration.observe(seconds)


OPTIONS: Final = web.AppKey("options", Wiring)
METRICS: Final = web.AppKey("metrics", InjectorMetrics)
LOG: Final = web.AppKey("log", structlog.typing.FilteringBoundLogger)


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def mutate(request: web.Request) -> web.Response:
    app = request.app
    started = time.perf_counter()
    if request.content_length is not None and request.content_length > MAX_BODY:
        app[METRICS].count(INVALID, time.perf_counter() - started)
        return _refuse(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        app[METRICS].count(INVALID, time.perf_counter() - started)
        return _refuse(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        result = answer(json.loads(body), app[OPTIONS])
    except (ValueError, RecursionError) as error:
        # json's errors and ReviewError are ValueErrors; a nesting bomb is a RecursionError.
        problem = str(error) if isinstance(error, ReviewError) else "the body is not JSON"
        app[METRICS].count(INVALID, time.perf_counter() - started)
        return _refuse(400, problem)
    except Exception as error:  # a fault of ours: logged, answered 500, never a dead process
        app[METRICS].count(ERROR, time.perf_counter() - started)
        app[LOG].error("review failed", error=f"{type(error).__name__}: {error}"[:300])
        return _refuse(500, "internal error")
    app[METRICS].count(result.result, time.perf_counter() - started)
    return web.json_response(result.review)


async def livez(request: web.Request) -> web.Response:
    return text("ok")


async def readyz(request: web.Request) -> web.Response:
    return text("ok")


def make_app(options: Wiring, metrics: InjectorMetrics, log: Log) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[OPTIONS] = options
    app[METRICS] = metrics
    app[LOG] = log
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry))
    return app


def _stamp(*paths: Path) -> tuple[float, ...] | None:
    try:
        return tuple(path.stat().st_mtime for path in paths)
    except OSError:
        return None


async def keep_certificate_fresh(
    context: ssl.SSLContext, cert: Path, key: Path, log: Log, every: float = CERT_CHECK_EVERY
) -> None:
    """Reloads the certificate into the live context when its files change (a renewed Secret):
    new handshakes use the new one, without a restart. A half-written pair is retried later."""
    seen = _stamp(cert, key)
    while True:
        await asyncio.sleep(every)
        now = _stamp(cert, key)
        if now is None or now == seen:
            continue
        try:
            load_into(context, cert, key)
        except ConfigError as error:
            log.warning("certificate not reloaded", error=str(error)[:200])
            continue
        seen = now
        log.info("certificate reloaded", certFile=str(cert))


def certificate_refresher(
    context: ssl.SSLContext, cert: Path, key: Path, log: Log
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app owns the refresher for as long as it serves (aiojobs' cleanup_ctx pattern)."""

    async def refresher(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(keep_certificate_fresh(context, cert, key, log))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return refresher


async def run_injector(settings: Settings, log: Log) -> int:
    """Serves until SIGTERM/SIGINT."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ConfigError(
            "--tls-cert-file",
            "the API server calls webhooks over HTTPS only: give --tls-cert-file and "
            "--tls-key-file",
        )
    context = server_context(settings.tls_cert_file, settings.tls_key_file)
    options = wiring_of(settings)
    app = make_app(options, InjectorMetrics(), log)
    app.cleanup_ctx.append(
        certificate_refresher(context, settings.tls_cert_file, settings.tls_key_file, log)
    )
    # Every review allocates thousands of short-lived containers, so the cyclic collector runs
    # often; what exists at start-up (modules, the app) lives for ever, and freezing it keeps
    # each full collection from walking it again, a pause straight into a review's latency.
    gc.freeze()
    return await serving(
        app,
        settings.listen,
        log,
        "injector listening",
        context=lambda address: {
            "address": str(address),
            "mode": options.mode,
            "image": options.image,
            "port": options.port,
            "secret": options.secret,
            "version": __version__,
        },
        ssl_context=context,
    )
