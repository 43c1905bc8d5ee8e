"""Schedules, leader election, retention and the run log.

Revision ID: 0002_scheduler
Revises: 0001_initial
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0002_scheduler"
down_revision = "0001_initial"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0002_scheduler.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0002_scheduler.down.sql")
