"""One way to write a job row in SQL (insert_job_v1), versioned names for the functions the
runtime calls (the names without a version are wrappers), the scheduler's last tick, and
job times and counts a worker can read (domains job_time and job_count).

Revision ID: 0006_one_job_writer
Revises: 0005_retention_bounds
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0006_one_job_writer"
down_revision = "0005_retention_bounds"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0006_one_job_writer.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0006_one_job_writer.down.sql")
