"""Key sources: the file is re-read every time, and Kubernetes' symlink swap is seen at once."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from sidecar.agent.keys import EnvKey, FileKey, KeyUnavailable, fingerprint
from sidecar.secret import Secret
from tests.support import FAKE_KEY, OTHER_KEY, mount_secret


def test_a_rotated_secret_is_read_without_a_restart(tmp_path: Path) -> None:
    mount_secret(tmp_path, FAKE_KEY, 1)
    source = FileKey(tmp_path / "api-key")
    assert source.read().reveal() == FAKE_KEY  # the trailing newline is dropped
    mount_secret(tmp_path, OTHER_KEY, 2)
    assert source.read().reveal() == OTHER_KEY


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda path: None, "does not exist"),
        (lambda path: path.write_text("  \n"), "is empty"),
        (lambda path: path.mkdir(), "is a directory"),
        (lambda path: path.write_bytes(b"\xff\xfe"), "cannot be read"),
        (lambda path: path.write_text("lp_test_k1_FAKE secret"), "cannot be sent in a header"),
    ],
)
def test_an_unusable_file_is_a_clear_error_that_never_shows_the_key(
    tmp_path: Path, prepare: object, message: str
) -> None:
    path = tmp_path / "api-key"
    prepare(path)  # type: ignore[operator]
    with pytest.raises(KeyUnavailable, match=message) as caught:
        FileKey(path).read()
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda path: os.mkfifo(path), "not a regular file (a FIFO)", id="fifo"),
        pytest.param(lambda path: path.symlink_to("/dev/zero"), "(a device)", id="dev-zero"),
        pytest.param(lambda path: path.symlink_to("/dev/urandom"), "(a device)", id="dev-urandom"),
        pytest.param(
            lambda path: os.truncate(path.touch() or path, 1 << 30),
            "1073741824 bytes, too large",
            id="sparse-1gib",
        ),
        pytest.param(lambda path: path.write_bytes(b"k" * 4097), "too large", id="4kib-plus-1"),
    ],
)
def test_a_path_that_is_not_a_small_file_is_refused_without_reading_it(
    tmp_path: Path, make: Any, message: str
) -> None:
    path = tmp_path / "api-key"
    make(path)
    # A blocking open or read of the FIFO would hang here rather than raise.
    with pytest.raises(KeyUnavailable, match=re.escape(message)):
        FileKey(path).read()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file whatever its mode")
def test_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "api-key"
    path.write_text(FAKE_KEY)
    path.chmod(0)
    with pytest.raises(KeyUnavailable, match="not readable"):
        FileKey(path).read()


def test_the_environment_key_is_checked_the_same_way() -> None:
    assert EnvKey(Secret(f" {FAKE_KEY}\n")).read().reveal() == FAKE_KEY
    with pytest.raises(KeyUnavailable, match="cannot be sent in a header"):
        EnvKey(Secret("lp_test_k1_FAKE\x00")).read()


def test_fingerprints_tell_keys_apart_without_showing_them() -> None:
    first, second = fingerprint(Secret(FAKE_KEY)), fingerprint(Secret(OTHER_KEY))
    assert first != second
    assert len(first) == 8
    assert first not in FAKE_KEY
