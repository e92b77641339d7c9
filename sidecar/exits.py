"""Every exit code of the `layers-sidecar` command, written once. No imports: the CLI reads
EXIT_CONFIG for a usage error before it loads anything else."""

from __future__ import annotations

EXIT_READY = 0
# `check` found no good answer by --deadline.
EXIT_DEADLINE = 1
# A setting that cannot be used, for every command (and, for `check`, a key that cannot be read).
EXIT_CONFIG = 2
EXIT_UNAUTHENTICATED = 3
EXIT_BILLING = 4
EXIT_STOPPED = 5
EXIT_CREDITS_LOW = 6
# A second Ctrl-C during shutdown.
EXIT_INTERRUPTED = 130
