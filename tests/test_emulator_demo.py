"""`emulate` and `demo`: what they tell a newcomer."""

from __future__ import annotations

import pytest

from sidecar import cli
from sidecar.emulator.demo import DEMO_KEY, demo_banner


def test_emulate_help_and_the_demo_say_which_keys_the_emulator_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["emulate", "--help"])
    assert done.value.code == 0
    assert "lp_<env>_<key_id>_<secret>" in " ".join(capsys.readouterr().out.split())
    banner = demo_banner("http://127.0.0.1:8080", "http://127.0.0.1:8081")
    assert "lp_<env>_<key_id>_<secret>" in banner


def test_the_demo_key_is_one_the_emulator_accepts_and_obviously_fake() -> None:
    from sidecar.emulator.app import KEY_FORMAT

    assert KEY_FORMAT.match(DEMO_KEY)
    assert "NOTaREAL" in DEMO_KEY
