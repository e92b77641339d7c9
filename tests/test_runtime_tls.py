"""The runtime's TLS files: a FIFO never hangs start-up, an encrypted key never prompts. One
line, exit 2, whatever is wrong with --tls-cert-file or --tls-key-file (real `hub` processes)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sidecar.runtime.tls import server_context
from tests.support import certificates, clean_env, command

pytestmark = pytest.mark.e2e


def run_hub(cert: Path, key: Path) -> subprocess.CompletedProcess[str]:
    # stdin a terminal would show a prompt; a pipe shows OpenSSL's prompt on stderr all the same.
    return subprocess.run(
        command("hub", "--tls-cert-file", str(cert), "--tls-key-file", str(key)),
        env=clean_env(LAYERS_SIDECAR_LISTEN="127.0.0.1:0"),
        capture_output=True,
        text=True,
        timeout=20,  # the FIFO bug: no exit at all
        stdin=subprocess.DEVNULL,
        check=False,
    )


def one_line_exit_2(done: subprocess.CompletedProcess[str], flag: str, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith(f"layers-sidecar hub: {flag}: "), done.stderr
    for word in words:
        assert word in done.stderr
    assert "PEM pass phrase" not in done.stderr + done.stdout


def encrypted_key(tmp_path: Path) -> Path:
    tls = certificates(tmp_path)
    key = load_pem_private_key(tls.key.read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"FAKEpassphraseFAKE"),
        )
    )
    return locked


def test_a_fifo_certificate_is_one_line_and_exit_2(tmp_path: Path) -> None:
    tls = certificates(tmp_path)
    fifo = tmp_path / "cert.fifo"
    os.mkfifo(fifo)
    one_line_exit_2(run_hub(fifo, tls.key), "--tls-cert-file", "a FIFO")


def test_a_fifo_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    tls = certificates(tmp_path)
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    one_line_exit_2(run_hub(tls.cert, fifo), "--tls-key-file", "a FIFO")


def test_a_passphrase_protected_key_never_prompts(tmp_path: Path) -> None:
    tls = certificates(tmp_path)
    one_line_exit_2(run_hub(tls.cert, encrypted_key(tmp_path)), "--tls-key-file", "encrypted")


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    tls = certificates(tmp_path)
    one_line_exit_2(run_hub(tls.cert, tmp_path / "missing.key"), "--tls-key-file", "missing.key")
    one_line_exit_2(run_hub(tmp_path / "missing.crt", tls.key), "--tls-cert-file")


def test_a_directory_is_one_line(tmp_path: Path) -> None:
    tls = certificates(tmp_path)
    one_line_exit_2(run_hub(tls.cert, tmp_path), "--tls-key-file", "a directory")


def test_good_files_still_load(tmp_path: Path) -> None:
    tls = certificates(tmp_path)
    assert server_context(tls.cert, tls.key) is not None
