"""The server side of HTTPS for every role that serves it (`hub`, the injector's webhook).

The certificate and key files are read the way key files are (`agent.keys`): opened without
blocking (a FIFO with no writer would hang start-up in OpenSSL's read), only a regular file of
bounded size, and the key loaded with a password callback that refuses (an encrypted key would
otherwise make OpenSSL prompt on the terminal). Any problem is one `ConfigError` line: exit 2.
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path
from typing import Final

from ..filekind import describe
from ..options import ConfigError

# A certificate chain or key is a few KiB; anything this large is not one.
MAX_PEM_FILE: Final = 1024 * 1024
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_FDS: Final = Path("/proc/self/fd")


class _Encrypted(Exception):
    """Raised from the password callback: no prompt, no passphrase."""


def _refuse_password() -> bytes:
    raise _Encrypted


def _open_checked(path: Path, setting: str) -> int:
    """A descriptor on `path`, checked to be a regular file of bounded size."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        raise ConfigError(setting, f"cannot read {path}: {error.strerror or error}") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = f"{path} is {describe(info.st_mode)}; mount the Secret as a file"
    elif info.st_size > MAX_PEM_FILE:
        problem = f"{path} is {info.st_size} bytes, too large for PEM (at most {MAX_PEM_FILE})"
    if problem is not None:
        os.close(fd)
        raise ConfigError(setting, problem)
    return fd


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """An SSLContext serving `cert_file` with `key_file`; a ConfigError naming the flag when
    either cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    load_into(context, cert_file, key_file)
    return context


def load_into(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    """Loads the pair into `context` (at start-up, or again when a renewed Secret changes the
    files); a ConfigError naming the flag when either cannot be used."""
    cert_fd = _open_checked(cert_file, "--tls-cert-file")
    try:
        key_fd = _open_checked(key_file, "--tls-key-file")
        try:
            # Through the descriptors already checked: the paths could be swapped for a FIFO
            # between the check and OpenSSL's open.
            cert, key = (
                (_FDS / str(cert_fd), _FDS / str(key_fd))
                if _FDS.is_dir()
                else (cert_file, key_file)
            )
            context.load_cert_chain(cert, key, password=_refuse_password)
        except _Encrypted:
            raise ConfigError(
                "--tls-key-file",
                f"{key_file} is encrypted (a passphrase-protected key); "
                "give the key without a passphrase",
            ) from None
        except (OSError, ssl.SSLError) as error:
            problem = (
                getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)
            )
            raise ConfigError(
                "--tls-cert-file", f"cannot use {cert_file} with {key_file}: {problem}"
            ) from None
        finally:
            os.close(key_fd)
    finally:
        os.close(cert_fd)
