"""Where the key comes from: the environment, or a file re-read before every poll.

Kubernetes updates a mounted Secret by swapping the `..data` symlink atomically, so reading the
path afresh each time always sees either the old key or the new one, never half of each; the file
is a few bytes and a poll comes at most every few seconds, so caching would buy nothing.

Whatever sits at the path, reading it is bounded and never blocks: it is opened non-blocking
(a FIFO with no writer opens at once), only a regular file of at most MAX_KEY_FILE bytes is read,
so a FIFO, /dev/zero, /dev/urandom, a directory or a sparse gigabyte is a clear KeyUnavailable
rather than a frozen event loop or a gigabyte in memory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..filekind import describe
from ..secret import Secret
from ..settings import Settings

# Printable ASCII without spaces: anything else cannot travel in an HTTP header unchanged.
_ALLOWED = frozenset(chr(c) for c in range(0x21, 0x7F))
# A key is well under a hundred bytes; a file past this is not a key.
MAX_KEY_FILE: Final = 4096
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class KeyUnavailable(Exception):
    """The key cannot be had right now. The message never contains the key."""


def fingerprint(key: Secret) -> str:
    """A short, non-reversible tag that tells two keys apart in a log line."""
    return hashlib.sha256(key.reveal().encode()).hexdigest()[:8]


def _checked(text: str, where: str) -> Secret:
    key = text.strip()
    if not key:
        raise KeyUnavailable(f"{where} is empty")
    if not set(key) <= _ALLOWED:
        raise KeyUnavailable(f"{where} holds characters that cannot be sent in a header")
    return Secret(key)


@dataclass(frozen=True)
class EnvKey:
    key: Secret

    def read(self) -> Secret:
        return _checked(self.key.reveal(), "LAYERS_API_KEY")


@dataclass(frozen=True)
class FileKey:
    path: Path

    def read(self) -> Secret:
        try:
            data = _read_bounded(self.path)
        except FileNotFoundError:
            raise KeyUnavailable(f"key file {self.path} does not exist") from None
        except PermissionError:
            raise KeyUnavailable(
                f"key file {self.path} is not readable (permission denied)"
            ) from None
        except IsADirectoryError:
            raise KeyUnavailable(f"key file {self.path} is a directory") from None
        except OSError as error:
            raise KeyUnavailable(f"key file {self.path} cannot be read: {_why(error)}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyUnavailable(f"key file {self.path} cannot be read: not UTF-8 text") from None
        return _checked(text, f"key file {self.path}")


def _read_bounded(path: Path) -> bytes:
    """At most MAX_KEY_FILE bytes of a regular file; KeyUnavailable for anything else."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(info.st_mode):
            raise KeyUnavailable(
                f"key file {path} is not a regular file ({describe(info.st_mode)}); "
                "mount the Secret as a file"
            )
        if info.st_size > MAX_KEY_FILE:
            raise KeyUnavailable(
                f"key file {path} is {info.st_size} bytes, too large for a key "
                f"(at most {MAX_KEY_FILE})"
            )
        data = os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:  # it grew between fstat and read
        raise KeyUnavailable(f"key file {path} is too large for a key (at most {MAX_KEY_FILE})")
    return data


def _why(error: OSError) -> str:
    """What an OSError means for a key file, in words (`OSError` alone says nothing)."""
    if error.errno == errno.ENXIO:  # what open() says of a socket
        return "it is a socket (or a device with nothing behind it); mount the Secret as a file"
    if error.errno == errno.ELOOP:
        return "it is a symlink loop"
    return error.strerror or type(error).__name__


KeySource = EnvKey | FileKey


def key_source(settings: Settings) -> KeySource:
    """Where this configuration's key comes from (settings made sure there is exactly one)."""
    if settings.api_key_file is not None:
        return FileKey(settings.api_key_file)
    assert settings.api_key is not None
    return EnvKey(settings.api_key)
