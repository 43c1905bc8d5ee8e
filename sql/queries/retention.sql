-- Retention: run by the elected scheduler, or by hand from psql (SELECT * FROM apply_retention()).

-- name: apply_retention
-- Remove finished work past its retention; one row per step with what it removed.
SELECT step, affected FROM {schema}.apply_retention(coalesce(%(now)s::timestamptz, now()));

-- name: set_retention
-- Change the defaults (queue '*') or one queue's retention; NULLs leave a value as it is.
SELECT {schema}.set_retention(%(queue)s, %(completed_keep)s::interval, %(completed_max)s::integer,
                              %(dead_keep)s::interval, %(runs_keep)s::interval);

-- name: list_retention
-- The defaults, then what each queue keeps.
SELECT '*' AS queue, completed_keep, completed_max, dead_keep, runs_keep FROM {schema}.retention WHERE queue = '*'
UNION ALL
(SELECT queue, completed_keep, completed_max, dead_keep, runs_keep FROM {schema}.retention_by_queue ORDER BY queue);
