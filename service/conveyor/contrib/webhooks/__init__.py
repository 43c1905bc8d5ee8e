"""Webhooks as a ready task: ``conveyor.webhooks.send`` on the ``webhooks`` queue.

Importing this package registers the task in the default registry, so a worker started with
``conveyor worker --tasks conveyor.contrib.webhooks`` (or an application's module that
imports it) sends them. Each job is one HTTP POST of a JSON payload, signed the Standard
Webhooks way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) with the secret
the job names; the secret itself lives in the worker's environment
(``CONVEYOR_WEBHOOK_SECRET_<NAME>``) or in :func:`configure`, never in the job. Applications
enqueue with :func:`send_webhook`::

    await send_webhook(client, "https://example.com/hooks", {"id": 42}, "billing", event="invoice.paid")

and receivers check what they get with :func:`verify` (docs/webhooks.md).

- ``signing``: :func:`sign`, :func:`verify` and the secrets' format;
- ``targets``: the guard against private, loopback and link-local targets;
- ``settings``: :class:`WebhookSettings`, :func:`configure`;
- ``send``: the task, how each answer is judged, :func:`send_webhook`.
"""

from __future__ import annotations

from ...tasks import default_registry
from .send import (
    SEND_TASK,
    WEBHOOK_BACKOFF,
    WEBHOOK_MAX_ATTEMPTS,
    WEBHOOK_QUEUE,
    WebhookDeliveryError,
    register,
    retry_after_seconds,
    send,
    send_webhook,
    webhook_args,
)
from .settings import UnknownSecretError, WebhookSettings, configure, settings
from .signing import WebhookVerificationError, sign, signature_header, verify
from .targets import TargetPolicy, TargetRefused, special_use

__all__ = [
    "SEND_TASK",
    "WEBHOOK_BACKOFF",
    "WEBHOOK_MAX_ATTEMPTS",
    "WEBHOOK_QUEUE",
    "TargetPolicy",
    "TargetRefused",
    "UnknownSecretError",
    "WebhookDeliveryError",
    "WebhookSettings",
    "WebhookVerificationError",
    "configure",
    "register",
    "retry_after_seconds",
    "send",
    "send_webhook",
    "settings",
    "sign",
    "signature_header",
    "special_use",
    "verify",
    "webhook_args",
]

register(default_registry)
