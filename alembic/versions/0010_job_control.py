"""Job control: pause a task everywhere or everything; cancel, abort, run now and delete a job.

Revision ID: 0010_job_control
Revises: 0009_flows
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0010_job_control"
down_revision = "0009_flows"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0010_job_control.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0010_job_control.down.sql")
