"""What a mounted Secret's path turned out to be, in the words of a one-line error."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from sidecar.filekind import describe


def test_each_kind_of_file_that_is_not_a_regular_file_is_named(tmp_path: Path) -> None:
    fifo, sock = tmp_path / "fifo", tmp_path / "sock"
    os.mkfifo(fifo)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sock))
        assert describe(sock.stat().st_mode) == "a socket"
    assert describe(fifo.stat().st_mode) == "a FIFO"
    assert describe(tmp_path.stat().st_mode) == "a directory"
    assert describe(Path("/dev/null").stat().st_mode) == "a device"
