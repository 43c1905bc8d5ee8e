"""Results, chains and batches: settle_v1 (what a job's end does to waiters, followers and
batches), create_batch, seal_batch, enqueue_flow.

Revision ID: 0009_flows
Revises: 0008_limits
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0009_flows"
down_revision = "0008_limits"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0009_flows.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0009_flows.down.sql")
