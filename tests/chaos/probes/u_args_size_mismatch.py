"""Probe U: args whose size the Python client and the table measure differently.
Python writes 1e300 as '1e+300' (6 bytes); jsonb (numeric) writes 301 digits, and the table's
args_at_most_1_mib counts those. 4000 such numbers: ~28 kB to the client, ~1.2 MB to the table.
Also args exactly at the client's 1 MiB limit through conveyor.enqueue() (SQL)."""
import sys

import probe_tasks  # noqa: F401
from conveyor import SyncConveyor, task

URL = sys.argv[1]


@task(queue="p")
def floats(xs: list) -> None:  # noqa: ARG001
    pass


with SyncConveyor(URL) as c:
    c.create_queue("p")
    for label, args in [("4000 x 1e300", {"xs": [1e300] * 4000}), ("4000 x 1e-300", {"xs": [1e-300] * 4000})]:
        try:
            print(label, "-> enqueued", c.enqueue("floats", args))
        except Exception as exc:  # noqa: BLE001
            print(label, "->", type(exc).__module__, type(exc).__name__, str(exc).splitlines()[0][:200])
