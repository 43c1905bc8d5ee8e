"""Flow control and job control: job key, meta, chain and batch links, limits on queues,
rate windows, pauses of tasks and of everything, batches.

Revision ID: 0007_flow_control
Revises: 0006_one_job_writer
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0007_flow_control"
down_revision = "0006_one_job_writer"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0007_flow_control.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0007_flow_control.down.sql")
