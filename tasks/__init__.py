"""Job handlers, one module per domain. `conveyor worker` and `conveyor dev` import this
package by default (`--tasks tasks`); import each domain module here so its tasks register.
"""

from . import examples

__all__ = ["examples"]
