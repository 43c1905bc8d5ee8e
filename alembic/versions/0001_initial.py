"""Initial schema: queues, tasks, jobs, history, dead-letter table, workers, functions, views.

Revision ID: 0001_initial
Revises:
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0001_initial"
down_revision = None


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0001_initial.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0001_initial.down.sql")
