"""Lifecycle with real processes: the ready-file beside a worker that no probe reaches (the
emptyDir pattern of docs/lifecycle.md), and POST /quitquitquit ending a Job's sidecar."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import Emulator, Process, clean_env, emulator, http, sidecar, wait_for

# The worker of docs/lifecycle.md, in Python: before each job it checks the ready-file named by
# its own WORKER_READY_FILE; no file, no call to Layers. It writes one line per turn so the test
# can see what it did and when.
WORKER = """
import os, sys, time
ready, journal = os.environ["WORKER_READY_FILE"], sys.argv[1]
jobs = 0
while True:
    if os.path.exists(ready):
        jobs += 1
        line = f"took {jobs}"
    else:
        line = "paused"
    with open(journal, "a") as out:
        out.write(line + "\\n")
    time.sleep(0.02)
"""


@contextmanager
def worker(ready: Path, journal: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(journal)],
        env=clean_env(WORKER_READY_FILE=str(ready)),
        stdin=subprocess.DEVNULL,
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def lines(journal: Path) -> list[str]:
    return journal.read_text().splitlines() if journal.exists() else []


def readyz(process: Process) -> int:
    return process.get("/readyz").status


def paused_then_idle(journal: Path) -> None:
    """Waits until the worker has paused for several turns in a row, and checks it took no job
    while the file was gone."""
    start = len(lines(journal))
    wait_for(
        lambda: lines(journal)[start:].count("paused") >= 5, what="the worker to pause for 5 turns"
    )
    taken = [line for line in lines(journal)[start:] if line.startswith("took")]
    # At most one job can have started in the turn that read the file just before it went.
    assert len(taken) <= 1, taken
    settled = len(lines(journal))
    wait_for(lambda: len(lines(journal)) >= settled + 5, what="five more turns")
    assert all(line == "paused" for line in lines(journal)[settled:])


def test_the_ready_file_follows_readiness_and_gates_a_worker(tmp_path: Path) -> None:
    shared = tmp_path / "shared"  # the emptyDir both containers mount
    shared.mkdir()
    ready = shared / "ready"
    ready.write_text("left by an earlier run\n")  # an emptyDir outlives a container restart
    journal = tmp_path / "worker.log"
    with emulator(tmp_path) as emu:
        emu.set(failure="unauthenticated")
        with (
            sidecar(tmp_path, emu.url, "--ready-file", str(ready)) as sc,
            worker(ready, journal),
        ):
            wait_for(lambda: sc.get("/status").json()["reason"] == "unauthenticated", what="401")
            assert not ready.exists(), "a file from an earlier run must not vouch for this one"
            paused_then_idle(journal)

            emu.reset()
            wait_for(lambda: readyz(sc) == 200, what="ready")
            wait_for(ready.exists, what="the ready-file")
            assert ready.read_text().startswith("ready since ")
            wait_for(lambda: "took 3" in lines(journal), what="the worker to take jobs")

            # A kill switch: readiness goes, the file goes, the worker stops calling Layers.
            engage(emu, sc, ready)
            paused_then_idle(journal)

            emu.set(killSwitch=False)
            wait_for(ready.exists, what="the ready-file back")
            before = sum(line.startswith("took") for line in lines(journal))
            wait_for(
                lambda: sum(line.startswith("took") for line in lines(journal)) > before + 3,
                what="the worker to resume",
            )
            # Written by rename: no temporary file is ever left beside it.
            assert sorted(p.name for p in shared.iterdir()) == ["ready"]

            assert sc.stop(signal.SIGTERM) == 0
            assert not ready.exists(), "a stopped sidecar vouches for nothing"


def engage(emu: Emulator, sc: Process, ready: Path) -> None:
    emu.set(killSwitch=True)
    wait_for(lambda: readyz(sc) == 503, what="not ready on the kill switch")
    wait_for(lambda: not ready.exists(), what="the ready-file removed")


def test_quitquitquit_answers_200_and_exits_0(tmp_path: Path) -> None:
    with emulator(tmp_path) as emu, sidecar(tmp_path, emu.url, "--quitquitquit") as sc:
        assert http("GET", sc.url + "/quitquitquit").status == 405  # only POST ends it
        reply = http("POST", sc.url + "/quitquitquit")
        assert reply.status == 200
        assert sc.proc.wait(timeout=10) == 0
        stopping = [e for e in sc.log_events() if e["event"] == "stopping"]
        assert stopping[-1]["cause"] == "POST /quitquitquit"


def test_without_the_flag_there_is_no_quitquitquit(tmp_path: Path) -> None:
    with emulator(tmp_path) as emu, sidecar(tmp_path, emu.url) as sc:
        assert http("POST", sc.url + "/quitquitquit").status == 404
        assert sc.proc.poll() is None
