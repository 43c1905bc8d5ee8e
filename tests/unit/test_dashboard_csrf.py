"""The dashboard's CSRF tokens: tied to the session's key, checked in constant time."""

from __future__ import annotations

from conveyor.dashboard.session import csrf_token, csrf_valid


def test_a_csrf_token_belongs_to_its_key() -> None:
    token = csrf_token("cvk_a_secret")
    assert token == csrf_token("cvk_a_secret")
    assert len(token) == 64
    assert "secret" not in token
    assert csrf_token("cvk_b_secret") != token
    assert csrf_valid("cvk_a_secret", token)
    assert not csrf_valid("cvk_b_secret", token)
    assert not csrf_valid("cvk_a_secret", None)
    assert not csrf_valid("cvk_a_secret", "")
    assert not csrf_valid("cvk_a_secret", token[:-1])
