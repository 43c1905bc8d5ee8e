"""Queue limits: the limited claim (claim_limited_v1), rate windows, set_queue_limits.

Revision ID: 0008_limits
Revises: 0007_flow_control
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0008_limits"
down_revision = "0007_flow_control"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0008_limits.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0008_limits.down.sql")
