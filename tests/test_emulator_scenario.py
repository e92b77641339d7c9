"""What the emulator answers, as plain data: a scenario file is a checked patch on the defaults."""

from __future__ import annotations

import pytest

from sidecar.emulator.scenario import Scenario, load_scenario, updated


def test_a_scenario_file_is_a_patch_over_the_defaults() -> None:
    loaded = load_scenario('{"creditBalance": 5, "failure": "server_error"}')
    assert (loaded.creditBalance, loaded.failure, loaded.organizationName) == (
        5,
        "server_error",
        "Acme Growth",
    )
    with pytest.raises(ValueError, match="unknown scenario field"):
        load_scenario('{"credits": 5}')


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ([], "must be a JSON object"),
        ({"delay": -1}, "cannot be negative"),
        ({"creditBalance": True}, "must be a number"),
        ({"failure": "meteor"}, "failure must be null or one of"),
        ({"retryAfter": float("inf")}, "must be finite"),
    ],
)
def test_a_bad_patch_names_what_is_wrong_and_changes_nothing(patch: object, problem: str) -> None:
    before = Scenario()
    with pytest.raises(ValueError, match=problem):
        updated(before, patch)
    assert before == Scenario()
