"""What a path that should be a mounted Secret's file turned out to be, for one-line errors."""

from __future__ import annotations

import stat


def describe(mode: int) -> str:
    """`st_mode` of something that is not a regular file, in an operator's words."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
