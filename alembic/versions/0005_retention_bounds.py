"""Retention in bounded batches, indexes for what it filters on, queue_stats from a rollup,
and args held to 1 MiB by the jobs table itself.

Revision ID: 0005_retention_bounds
Revises: 0004_engine_edges
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0005_retention_bounds"
down_revision = "0004_engine_edges"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0005_retention_bounds.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0005_retention_bounds.down.sql")
