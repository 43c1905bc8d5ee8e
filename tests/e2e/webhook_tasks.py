"""The webhook task as the worker processes of tests/e2e/test_webhook_processes.py run it: its
retries an hour apart, so that a test moves a retry's time itself instead of racing it."""

from conveyor import Backoff, default_registry
from conveyor.contrib import webhooks

webhooks.register(default_registry, max_attempts=3, backoff=Backoff.fixed(3600))
