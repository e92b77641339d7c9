"""The key as a value that never shows itself."""

from __future__ import annotations

from sidecar.commands import load
from sidecar.secret import Secret


def test_the_secret_never_shows_itself() -> None:
    secret = Secret("lp_test_k1_FAKEsecretFAKE")
    assert "FAKEsecret" not in repr(secret)
    assert "FAKEsecret" not in str(secret)
    settings = load({}, {"LAYERS_API_KEY": secret.reveal()})
    assert "FAKEsecret" not in repr(settings)
    assert settings.api_key is not None
    assert settings.api_key.reveal().endswith("FAKEsecretFAKE")
