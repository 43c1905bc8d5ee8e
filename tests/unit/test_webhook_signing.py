"""Standard Webhooks signatures: the spec's published vector, rotation, and verify's refusals."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from conveyor.contrib.webhooks import WebhookVerificationError, sign, signature_header, verify
from conveyor.contrib.webhooks.signing import SecretError, decode_secret

# The vector of the spec's reference library (standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py, test_sign_function): proves we sign as every
# Standard Webhooks receiver checks, not merely as our own verify() does.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

OTHER_SECRET = "whsec_" + base64.b64encode(b"another key of at least 24 bytes").decode()


def headers(signature: str, *, msg_id: str = SPEC_ID, timestamp: int = SPEC_TIMESTAMP) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_signs_the_specs_published_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.encode()) == SPEC_SIGNATURE
    moment = datetime.fromtimestamp(SPEC_TIMESTAMP + 0.9, UTC)  # cut to whole seconds
    assert sign(SPEC_SECRET, SPEC_ID, moment, SPEC_BODY) == SPEC_SIGNATURE
    # The prefix is optional, and the raw key works as bytes.
    assert sign(SPEC_SECRET.removeprefix("whsec_"), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    assert sign(key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_verifies_the_specs_vector_and_returns_the_webhook_id() -> None:
    got = verify(SPEC_SECRET, headers(SPEC_SIGNATURE), SPEC_BODY, now=SPEC_TIMESTAMP + 10)
    assert got == SPEC_ID
    # Header names in any case (Starlette gives them lower case, others title case).
    mixed = {
        "Webhook-Id": SPEC_ID,
        "WEBHOOK-TIMESTAMP": str(SPEC_TIMESTAMP),
        "Webhook-Signature": SPEC_SIGNATURE,
    }
    assert verify(SPEC_SECRET, mixed, SPEC_BODY.encode(), now=SPEC_TIMESTAMP) == SPEC_ID


def test_rotation_signs_with_every_secret_and_either_one_verifies() -> None:
    header = signature_header([SPEC_SECRET, OTHER_SECRET], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    first, second = header.split(" ")
    assert first == SPEC_SIGNATURE
    assert second == sign(OTHER_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    for known in (SPEC_SECRET, OTHER_SECRET, [OTHER_SECRET], f"{OTHER_SECRET} {SPEC_SECRET}"):
        assert verify(known, headers(header), SPEC_BODY, now=SPEC_TIMESTAMP) == SPEC_ID
    stranger = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(WebhookVerificationError, match="no signature matches"):
        verify(stranger, headers(header), SPEC_BODY, now=SPEC_TIMESTAMP)


def test_other_schemes_and_junk_in_the_signature_list_are_skipped() -> None:
    listed = f"v1a,c2lnbmVk v2,{SPEC_SIGNATURE[3:]} garbage v1,!!!notbase64 {SPEC_SIGNATURE}"
    assert verify(SPEC_SECRET, headers(listed), SPEC_BODY, now=SPEC_TIMESTAMP) == SPEC_ID


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-id": None}, "missing header webhook-id"),
        ({"webhook-timestamp": None}, "missing header webhook-timestamp"),
        ({"webhook-signature": None}, "missing header webhook-signature"),
        ({"webhook-id": "", "webhook-signature": ""}, "missing header webhook-id, webhook-signature"),
        ({"webhook-timestamp": "hello"}, "malformed webhook-timestamp"),
        ({"webhook-timestamp": "1614265330.5"}, "malformed webhook-timestamp"),
        ({"webhook-timestamp": "-1614265330"}, "malformed webhook-timestamp"),
        ({"webhook-id": "msg.1"}, "malformed webhook-id"),
        ({"webhook-id": "msg 1"}, "malformed webhook-id"),
        ({"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="}, "no signature matches"),
        ({"webhook-signature": "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}, "no signature matches"),
        ({"webhook-signature": "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}, "no signature matches"),
        ({"webhook-id": "msg_other"}, "no signature matches"),  # the id is signed
    ],
)
def test_refuses_missing_malformed_and_wrong_headers(change: dict[str, str | None], message: str) -> None:
    sent = headers(SPEC_SIGNATURE)
    for name, value in change.items():
        if value is None:
            del sent[name]
        else:
            sent[name] = value
    with pytest.raises(WebhookVerificationError, match=message):
        verify(SPEC_SECRET, sent, SPEC_BODY, now=SPEC_TIMESTAMP)


def test_a_changed_body_does_not_verify() -> None:
    for body in ('{"test":2432232314}', '{"test": 2432232315}', SPEC_BODY + "\n", b""):
        with pytest.raises(WebhookVerificationError, match="no signature matches"):
            verify(SPEC_SECRET, headers(SPEC_SIGNATURE), body, now=SPEC_TIMESTAMP)


def test_timestamps_outside_the_tolerance_are_refused_both_ways() -> None:
    sent = headers(SPEC_SIGNATURE)
    assert verify(SPEC_SECRET, sent, SPEC_BODY, now=SPEC_TIMESTAMP + 300) == SPEC_ID
    assert verify(SPEC_SECRET, sent, SPEC_BODY, now=SPEC_TIMESTAMP - 300) == SPEC_ID
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(SPEC_SECRET, sent, SPEC_BODY, now=SPEC_TIMESTAMP + 301)
    with pytest.raises(WebhookVerificationError, match="in the future"):
        verify(SPEC_SECRET, sent, SPEC_BODY, now=SPEC_TIMESTAMP - 301)
    assert verify(SPEC_SECRET, sent, SPEC_BODY, now=SPEC_TIMESTAMP + 3000, tolerance=3600) == SPEC_ID
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(SPEC_SECRET, sent, SPEC_BODY, now=datetime.fromtimestamp(SPEC_TIMESTAMP + 301, UTC))


def test_a_stale_timestamp_is_refused_even_with_a_valid_signature_for_it() -> None:
    # A replay: the signature is right for that old timestamp.
    old = SPEC_TIMESTAMP - 3600
    signature = sign(SPEC_SECRET, SPEC_ID, old, SPEC_BODY)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(SPEC_SECRET, headers(signature, timestamp=old), SPEC_BODY, now=SPEC_TIMESTAMP)


def test_secrets_that_are_not_base64_are_refused_without_showing_them() -> None:
    with pytest.raises(SecretError) as caught:
        decode_secret("whsec_not*base64!")
    assert "not*base64" not in str(caught.value)
    with pytest.raises(SecretError, match="at least 24"):
        decode_secret("whsec_" + base64.b64encode(b"short").decode(), min_bytes=24)
    with pytest.raises(ValueError, match="at least one secret"):
        verify([], headers(SPEC_SIGNATURE), SPEC_BODY)


def test_sign_refuses_ids_with_a_dot_and_naive_timestamps() -> None:
    with pytest.raises(ValueError, match="no dot"):
        sign(SPEC_SECRET, "msg.1", SPEC_TIMESTAMP, SPEC_BODY)
    with pytest.raises(ValueError, match="aware"):
        sign(SPEC_SECRET, SPEC_ID, datetime(2021, 2, 25), SPEC_BODY)  # naive: the point of the test
