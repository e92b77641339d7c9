"""Value parsers: each turns what an operator typed into a typed value, or a ValueError whose
text is the one line shown (the settings name the flag or variable in front of it).

No I/O except where a value names a file that must be usable at start-up (a scenario file, the
ready file's directory): refusing it here beats a failure seconds later.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .emulator.scenario import Scenario

# The most keys a hub may be told to remember: beyond this, memory, not the flag, is the limit.
MAX_KEYS_CEILING: Final = 10_000_000

_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# Signed, so that "-1s" is read as a duration and refused for its sign, not its spelling.
_DURATION = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d+)?|\.\d+))\s*(ms|s|m|h)?\s*$")
E = TypeVar("E", bound=StrEnum)

_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class AuthScheme(StrEnum):
    X_API_KEY = "x-api-key"
    BEARER = "bearer"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class InjectMode(StrEnum):
    NATIVE = "native"
    CLASSIC = "classic"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def _seconds(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (use 250ms, 10s, 2m, 1h or seconds)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_duration(text: str) -> float:
    """`250ms`, `10s`, `2m`, `1h` or a bare number of seconds → seconds; 0 or more."""
    seconds = _seconds(text)
    if seconds < 0:
        raise ValueError(f"{text!r} must not be negative")
    return seconds


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> Listen:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (for example 0.0.0.0:8080)")
    host = host.strip("[]") or "0.0.0.0"
    return Listen(host, int(port))


def choice(kind: type[E], text: str) -> E:
    try:
        return kind(text.strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ValueError(f"{text!r} is not one of {allowed}") from None


def _host_ok(host: str) -> bool:
    """A DNS name (labels of 1-63 letters, digits, `-` or `_`) or an IP address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.removesuffix(".").split(".")
        return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
    return True


def base_url(text: str) -> str:
    # Every way this URL could never be reached is refused here, at start-up, rather than
    # showing as a network_error seconds later.
    if any(c.isspace() or not c.isprintable() for c in text):
        # urlsplit drops tabs and newlines silently, and aiohttp would send a space as it is.
        raise ValueError(f"{text!r} holds a space or a control character")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r} must be a base URL without query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL must not hold credentials (the key is sent in a header)")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{text!r} has an impossible port (use 1-65535)")
    if not _host_ok(parts.hostname):
        raise ValueError(f"{text!r} has an impossible host {parts.hostname!r}")
    return text


def credits(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} must be a number of credits, 0 or more")
    return value


def positive_duration(text: str) -> float:
    seconds = _seconds(text)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be more than 0")
    return seconds


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


def switch(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise ValueError(f"{text!r} is not one of true, false (or 1, 0)")


# A scenario file is a small JSON object; anything larger is not one.
_MAX_SCENARIO_BYTES: Final = 1024 * 1024


def scenario_file(text: str) -> Scenario:
    # Imported here: only `emulate` and `demo` read a scenario, and `check` starts faster without.
    from .emulator.scenario import load_scenario

    path = file_path(text)
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_SCENARIO_BYTES + 1)
    except OSError as error:
        raise ValueError(f"{path}: {error.strerror or error}") from None
    if len(data) > _MAX_SCENARIO_BYTES:
        raise ValueError(f"{path}: larger than 1 MiB")
    try:
        return load_scenario(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


def key_count(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_KEYS_CEILING:
        raise ValueError(f"{text!r} must be between 1 and {MAX_KEYS_CEILING}")
    return value


def rate(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} must be a number of calls per second above 0")
    return value


def ready_file(text: str) -> Path:
    # Refused at start rather than failing at the first verdict: the directory is the shared
    # volume, and a typo in its path would leave the worker waiting for a file never written.
    path = file_path(text)
    if not path.parent.is_dir():
        raise ValueError(f"{str(path.parent)!r} is not a directory (mount the shared volume there)")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ValueError(f"{str(path.parent)!r} is not writable by this user")
    if path.is_dir():
        raise ValueError(f"{text!r} is a directory; name a file in it")
    return path


def file_path(text: str) -> Path:
    if not text.strip():
        raise ValueError("the path is empty")
    return Path(text)


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def secret_name(text: str) -> str:
    name = text.strip()
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise ValueError(f"{text!r} is not a Secret name (lower-case letters, digits, - and .)")
    return name


def secret_key(text: str) -> str:
    key = text.strip()
    if len(key) > 253 or not _SECRET_KEY.fullmatch(key) or key in (".", ".."):
        raise ValueError(f"{text!r} is not a key of a Secret (letters, digits, -, _ and .)")
    return key


def image(text: str) -> str:
    reference = text.strip()
    if not reference or any(c.isspace() or not c.isprintable() for c in reference):
        raise ValueError(f"{text!r} is not an image reference")
    return reference


def port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port (1-65535)")
    return int(text)
