"""Webhook settings: secrets by name, the guard's allowances, and reading the environment."""

from __future__ import annotations

import base64
import ipaddress
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from conveyor.contrib import webhooks
from conveyor.contrib.webhooks import UnknownSecretError, WebhookSettings, retry_after_seconds
from conveyor.errors import ConfigurationError

KEY = b"a key of thirty-two bytes, yes.."
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER = "whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALLOW_PRIVATE", "TIMEOUT", "MAX_REDIRECTS", "MAX_RETRY_AFTER", "USER_AGENT", "CA_FILE"):
        monkeypatch.delenv(f"CONVEYOR_WEBHOOK_{name}", raising=False)
    webhooks.configure(None)


def test_secrets_by_name_from_code_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = WebhookSettings(secrets={"Billing": [SECRET, OTHER]})
    assert settings.keys("billing") == (KEY, base64.b64decode(OTHER[6:]))
    monkeypatch.setenv("CONVEYOR_WEBHOOK_SECRET_PARTNER_2", f"  {OTHER}\t{SECRET} ")
    assert settings.keys("partner_2") == (base64.b64decode(OTHER[6:]), KEY)
    with pytest.raises(UnknownSecretError, match="set CONVEYOR_WEBHOOK_SECRET_NOPE"):
        settings.keys("nope")
    with pytest.raises(UnknownSecretError, match="is not allowed"):
        settings.keys("../etc")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secret 1 of 1 does not start with whsec_"),
        (f"{SECRET} whsec_***", "secret 2 of 2: the secret is not whsec_ followed by base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "at least 24 are required"),
        ("   ", "is empty"),
    ],
)
def test_malformed_secrets_are_refused_without_showing_them(
    value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_WEBHOOK_SECRET_BAD", value)
    with pytest.raises(ConfigurationError) as caught:
        WebhookSettings().keys("bad")
    if value.strip():
        assert message in str(caught.value)
        for part in value.split():
            assert part.removeprefix("whsec_") not in str(caught.value)
    with pytest.raises(ConfigurationError):
        WebhookSettings(secrets={"bad": value})


def test_secrets_stay_out_of_repr() -> None:
    settings = WebhookSettings(secrets={"billing": SECRET})
    assert SECRET[6:] not in repr(settings)
    assert str(KEY) not in repr(settings)


def test_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WebhookSettings.from_env() == WebhookSettings()
    assert WebhookSettings.from_env().policy.allow_all is False
    monkeypatch.setenv("CONVEYOR_WEBHOOK_ALLOW_PRIVATE", "10.1.0.0/16, 127.0.0.1 ::1")
    monkeypatch.setenv("CONVEYOR_WEBHOOK_TIMEOUT", "20s")
    monkeypatch.setenv("CONVEYOR_WEBHOOK_MAX_REDIRECTS", "0")
    monkeypatch.setenv("CONVEYOR_WEBHOOK_MAX_RETRY_AFTER", "2h")
    monkeypatch.setenv("CONVEYOR_WEBHOOK_USER_AGENT", "Shop-Hooks/2")
    settings = WebhookSettings.from_env()
    assert settings.policy.allowed == (
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert (settings.timeout, settings.max_redirects, settings.max_retry_after) == (20, 0, 7200)
    assert settings.user_agent == "Shop-Hooks/2"
    for on in ("1", "true", "YES"):
        monkeypatch.setenv("CONVEYOR_WEBHOOK_ALLOW_PRIVATE", on)
        assert WebhookSettings.from_env().policy.allow_all is True
    monkeypatch.setenv("CONVEYOR_WEBHOOK_ALLOW_PRIVATE", "0")
    assert WebhookSettings.from_env().policy == WebhookSettings().policy


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ALLOW_PRIVATE", "10.0.0.1/8", "allow_private_targets: '10.0.0.1/8' is not a network"),
        ("ALLOW_PRIVATE", "intranet", "'intranet' is not a network"),
        ("TIMEOUT", "soon", "CONVEYOR_WEBHOOK_TIMEOUT"),
        ("TIMEOUT", "0", "must be a positive number"),
        ("MAX_REDIRECTS", "-1", "use a whole number"),
        ("MAX_REDIRECTS", "50", "from 0 to 20"),
        ("MAX_RETRY_AFTER", "400d", "at most"),
        ("CA_FILE", "/no/such/bundle.pem", "does not exist"),
    ],
)
def test_bad_environment_values_are_refused_clearly(
    variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"CONVEYOR_WEBHOOK_{variable}", value)
    with pytest.raises(ConfigurationError, match=message):
        WebhookSettings.from_env()


def test_configure_in_code_and_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_WEBHOOK_TIMEOUT", "7")
    chosen = webhooks.configure(timeout=30, secrets={"a": SECRET})
    assert webhooks.settings() is chosen
    assert chosen.timeout == 30
    assert chosen.keys("A") == (KEY,)
    webhooks.configure(None)
    assert webhooks.settings().timeout == 7
    with pytest.raises(ConfigurationError, match="unexpected keyword"):
        webhooks.configure(timeuot=3)
    with pytest.raises(ConfigurationError, match="takes WebhookSettings"):
        webhooks.configure({"timeout": 3})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="True, False or a list of networks"):
        WebhookSettings(allow_private_targets="10.0.0.0/8")


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now.timestamp()) == 120
    assert retry_after_seconds(" 0 ", now.timestamp()) == 0
    later = format_datetime(now + timedelta(minutes=5), usegmt=True)
    assert retry_after_seconds(later, now.timestamp()) == 300
    earlier = format_datetime(now - timedelta(minutes=5), usegmt=True)
    assert retry_after_seconds(earlier, now.timestamp()) == 0
    for unreadable in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2026"):
        assert retry_after_seconds(unreadable, now.timestamp()) is None
