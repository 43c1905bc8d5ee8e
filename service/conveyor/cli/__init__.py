"""The ``conveyor`` command: one module per command group, attached to the root group here."""

from __future__ import annotations

from .api import api
from .control import pause, resume, tasks
from .dlq import dlq
from .exports import exports
from .grants import grant
from .history import history
from .imports import import_group
from .jobs import enqueue, jobs
from .keys import keys
from .queues import queues
from .retention import retention
from .root import main
from .run import dev, migrate, scheduler, worker
from .schedules import schedules
from .status import status
from .workers import workers

for _command in (
    migrate,
    grant,
    worker,
    scheduler,
    dev,
    api,
    enqueue,
    jobs,
    status,
    queues,
    tasks,
    pause,
    resume,
    dlq,
    schedules,
    retention,
    keys,
    history,
    workers,
    import_group,
    exports,
):
    main.add_command(_command)

__all__ = ["main"]
