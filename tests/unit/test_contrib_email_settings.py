"""The e-mail task's settings from the environment, and its arguments' checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import ArgumentsError, ConfigurationError
from conveyor.contrib.email import EmailSettings, configure, current_settings, email_args
from conveyor.contrib.email_settings import ENV

PASSWORD = "hunter2-not-in-messages"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV.values():
        monkeypatch.delenv(name, raising=False)
    configure(None)
    yield
    configure(None)


def test_from_env_reads_every_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-")
    monkeypatch.setenv("CONVEYOR_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("CONVEYOR_SMTP_PORT", "2525")
    monkeypatch.setenv("CONVEYOR_SMTP_USERNAME", "mailer")
    monkeypatch.setenv("CONVEYOR_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("CONVEYOR_SMTP_SECURITY", "TLS")
    monkeypatch.setenv("CONVEYOR_SMTP_FROM", "Shop <shop@example.com>")
    monkeypatch.setenv("CONVEYOR_SMTP_TIMEOUT", "1m")
    monkeypatch.setenv("CONVEYOR_SMTP_VALIDATE_CERTS", "off")
    monkeypatch.setenv("CONVEYOR_SMTP_CA_FILE", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("CONVEYOR_SMTP_LOCAL_HOSTNAME", "worker-1.example.com")
    monkeypatch.setenv("CONVEYOR_EMAIL_ATTACHMENTS_DIR", str(tmp_path))
    monkeypatch.setenv("CONVEYOR_EMAIL_MAX_ATTACHMENT_BYTES", "1000")
    assert current_settings() == EmailSettings(
        host="smtp.example.com",
        port=2525,
        username="mailer",
        password=PASSWORD,
        security="tls",
        sender="Shop <shop@example.com>",
        timeout=60.0,
        validate_certs=False,
        ca_file=str(tmp_path / "ca.pem"),
        local_hostname="worker-1.example.com",
        attachments_dir=str(tmp_path),
        max_attachment_bytes=1000,
    )
    assert PASSWORD not in repr(current_settings())


def test_defaults_and_the_port_of_each_security(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_SMTP_HOST", "smtp.example.com")
    defaults = EmailSettings.from_env()
    assert (defaults.security, defaults.effective_port, defaults.timeout, defaults.validate_certs) == (
        "starttls",
        587,
        30.0,
        True,
    )
    assert EmailSettings("h", security="tls").effective_port == 465
    assert EmailSettings("h", security="none").effective_port == 25


def test_the_password_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    monkeypatch.setenv("CONVEYOR_SMTP_HOST", "smtp.example.com")
    monkeypatch.setenv("CONVEYOR_SMTP_USERNAME", "mailer")
    monkeypatch.setenv("CONVEYOR_SMTP_PASSWORD_FILE", str(tmp_path / "password"))
    assert EmailSettings.from_env().password == PASSWORD


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no SMTP server: set CONVEYOR_SMTP_HOST"),
        ({"CONVEYOR_SMTP_SECURITY": "ssl"}, "CONVEYOR_SMTP_SECURITY='ssl': use starttls, tls or none"),
        ({"CONVEYOR_SMTP_PORT": "smtp"}, "use a port number from 1 to 65535"),
        ({"CONVEYOR_SMTP_PORT": "70000"}, "not a port from 1 to 65535"),
        ({"CONVEYOR_SMTP_USERNAME": "mailer"}, "SMTP credentials are half set"),
        ({"CONVEYOR_SMTP_PASSWORD": PASSWORD}, "SMTP credentials are half set"),
        (
            {
                "CONVEYOR_SMTP_USERNAME": "m",
                "CONVEYOR_SMTP_PASSWORD": PASSWORD,
                "CONVEYOR_SMTP_SECURITY": "none",
            },
            "would cross the network unencrypted",
        ),
        ({"CONVEYOR_SMTP_TIMEOUT": "soon"}, "CONVEYOR_SMTP_TIMEOUT: duration 'soon' is not valid"),
        ({"CONVEYOR_SMTP_TIMEOUT": "0"}, "must be a positive number of seconds"),
        ({"CONVEYOR_SMTP_FROM": "not an address"}, "the default sender (CONVEYOR_SMTP_FROM)"),
        ({"CONVEYOR_SMTP_VALIDATE_CERTS": "maybe"}, "use on or off"),
        (
            {"CONVEYOR_SMTP_CA_FILE": "/nonexistent/ca.pem"},
            "SMTP CA file '/nonexistent/ca.pem' does not exist",
        ),
        ({"CONVEYOR_EMAIL_ATTACHMENTS_DIR": "/nonexistent"}, "is not a folder"),
        ({"CONVEYOR_EMAIL_MAX_ATTACHMENT_BYTES": "10MB"}, "use a whole number of bytes"),
        ({"CONVEYOR_SMTP_PASSWORD_FILE": "/nonexistent/pw"}, "cannot read it"),
    ],
)
def test_bad_settings_say_what_to_fix_and_never_show_the_password(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    if env:
        monkeypatch.setenv("CONVEYOR_SMTP_HOST", "smtp.example.com")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        EmailSettings.from_env()
    assert message in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_configure_takes_settings_and_none_returns_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(EmailSettings("smtp.internal", security="none"))
    assert current_settings().host == "smtp.internal"
    configure(None)
    monkeypatch.setenv("CONVEYOR_SMTP_HOST", "smtp.example.com")
    assert current_settings().host == "smtp.example.com"
    with pytest.raises(ConfigurationError, match="takes EmailSettings"):
        configure({"host": "x"})  # type: ignore[arg-type]


def test_email_args_builds_the_job_arguments_and_refuses_bad_ones() -> None:
    assert email_args("ada@example.com", "Hi", "Hello", cc=("b@example.com",)) == {
        "to": ["ada@example.com"],
        "subject": "Hi",
        "text": "Hello",
        "cc": ["b@example.com"],
    }
    refusals = [
        ({"to": [], "subject": "s", "text": "t"}, "at least one recipient"),
        ({"to": ["ada"], "subject": "s", "text": "t"}, "'ada' is not an e-mail address"),
        ({"to": ["a@x.org\nBcc: e@x.org"], "subject": "s", "text": "t"}, "line break"),
        (
            {"to": ["a@x.org"], "subject": "s", "text": "t", "headers": {"Bad Name": "v"}},
            "not a valid field name",
        ),
        (
            {"to": ["a@x.org"], "subject": "s", "text": "t", "headers": {"Content-Type": "x"}},
            "message's structure",
        ),
        ({"to": ["a@x.org"], "subject": "s", "text": "t", "attachments": ["C:\\x.txt"]}, "is absolute"),
        ({"to": ["a@x.org"], "subject": "s", "text": "t", "attachments": ["a/../../x"]}, "'..' is refused"),
        ({"to": ["a@x.org"], "subject": "s", "text": "t", "reply_to": "nobody"}, "reply_to 'nobody'"),
    ]
    for args, message in refusals:
        with pytest.raises(ArgumentsError, match=r"conveyor\.email\.send") as raised:
            email_args(**args)  # type: ignore[arg-type]
        assert message in str(raised.value), (args, str(raised.value))
