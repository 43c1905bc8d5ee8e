"""Ready tasks for the jobs every team writes: e-mail, webhooks, exports and housekeeping.

Each module registers its tasks on import, in the default registry; a worker runs them with
``conveyor worker --tasks conveyor.contrib.email`` (or the module's name among the
application's own). Settings come from the environment or from the module's configure
function, never from job arguments, so secrets stay out of the jobs table.
"""
