"""The totals behind /metrics kept in the database: counters and histograms the same from every process.

Revision ID: 0012_metric_totals
Revises: 0011_api_keys
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0012_metric_totals"
down_revision = "0011_api_keys"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0012_metric_totals.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0012_metric_totals.down.sql")
