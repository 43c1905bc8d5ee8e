"""Sending e-mail with Conveyor's ready task, its queue rate-limited.

Run a worker with ``conveyor worker --tasks tasks.email_example`` and the CONVEYOR_SMTP_*
settings in its environment (docs/email.md); enqueue from the application with
:func:`conveyor.contrib.email.send_email`, or try it from the command line::

    conveyor enqueue conveyor.email.send --args '{"to": ["ada@example.com"], "subject": "Hi", "text": "Hello"}'

The limits below are this example's choice, not the task's: most SMTP relays cap how many
messages a sender may hand them per minute, and a queue's rate limit holds every worker to it
(jobs held back wait without using an attempt; see docs/limits.md).
"""

from __future__ import annotations

from conveyor import declare_queue
from conveyor.contrib import email  # noqa: F401 - registers conveyor.email.send on the "emails" queue

# At most 100 messages a minute over all workers, and 5 SMTP connections at once.
declare_queue("emails", rate="100/1m", concurrency=5)
