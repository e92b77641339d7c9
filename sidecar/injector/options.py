"""The command's Settings as the options of a wiring: what `inject` and `injector` pass on."""

from __future__ import annotations

from ..settings import OPTIONS, Settings
from .wiring import DEFAULT_IMAGE, Wiring


def duration_text(seconds: float) -> str:
    """Seconds as the operator writes them (`30s`, `250ms`, `1.5s`): what the sidecar reads."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    milliseconds = seconds * 1000
    if float(round(milliseconds, 6)).is_integer():
        return f"{round(milliseconds)}ms"
    return f"{seconds:g}s"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _changed(settings: Settings, name: str) -> bool:
    """Whether a setting differs from its default: only then is it passed on (the injected
    containers have the same defaults)."""
    option = OPTIONS[name]
    default = None if option.default is None else option.parse(option.default)
    return bool(getattr(settings, name) != default)


def wiring_of(settings: Settings) -> Wiring:
    return Wiring(
        mode=settings.inject_mode.value,
        secret=settings.inject_secret,
        secret_key=settings.inject_secret_key,
        image=settings.inject_image or DEFAULT_IMAGE,
        port=settings.inject_port,
        api_url=settings.api_url,
        fallback_api_url=settings.fallback_api_url,
        interval=duration_text(settings.interval) if _changed(settings, "interval") else None,
        stale_after=(
            duration_text(settings.stale_after) if _changed(settings, "stale_after") else None
        ),
        min_credits=None if settings.min_credits is None else _number_text(settings.min_credits),
        fallback_interval=(
            duration_text(settings.fallback_interval)
            if _changed(settings, "fallback_interval")
            else None
        ),
    )
