-- Conveyor schema, version 14: the import ledger (docs/coming-from-procrastinate.md).
--
-- `conveyor import procrastinate` records here every job it moved, in the transaction that
-- wrote the Conveyor job: a job recorded here is never imported again, whatever became of
-- its source row. One row per source job; the Conveyor job it became may since have moved
-- to job_history or dead_jobs (so job_id is not a foreign key).

CREATE TABLE imported_jobs (
    source         text NOT NULL,
    source_id      bigint NOT NULL,
    source_status  text NOT NULL,
    job_id         bigint NOT NULL,
    imported_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_id)
);
COMMENT ON TABLE imported_jobs IS
    'Jobs imported from another queue (source ''procrastinate:<schema>''), each once: '
    'its id there, its status there, the Conveyor job it became.';
