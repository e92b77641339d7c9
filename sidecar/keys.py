"""Where the key comes from: the environment, or a file re-read before every poll.

Kubernetes updates a mounted Secret by swapping the `..data` symlink atomically, so reading the
path afresh each time always sees either the old key or the new one, never half of each; the file
is a few bytes and a poll comes at most every few seconds, so caching would buy nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .settings import Secret, Settings

# Printable ASCII without spaces: anything else cannot travel in an HTTP header unchanged.
_ALLOWED = frozenset(chr(c) for c in range(0x21, 0x7F))


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
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeyUnavailable(f"key file {self.path} does not exist") from None
        except PermissionError:
            raise KeyUnavailable(
                f"key file {self.path} is not readable (permission denied)"
            ) from None
        except IsADirectoryError:
            raise KeyUnavailable(f"key file {self.path} is a directory") from None
        except (OSError, UnicodeDecodeError) as error:
            raise KeyUnavailable(
                f"key file {self.path} cannot be read: {type(error).__name__}"
            ) from None
        return _checked(text, f"key file {self.path}")


KeySource = EnvKey | FileKey


def key_source(settings: Settings) -> KeySource:
    """Where this configuration's key comes from (settings made sure there is exactly one)."""
    if settings.api_key_file is not None:
        return FileKey(settings.api_key_file)
    assert settings.api_key is not None
    return EnvKey(settings.api_key)
