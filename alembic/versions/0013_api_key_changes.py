"""A change to the API keys is announced on "<schema>.keys": API processes forget the keys they remember.

Revision ID: 0013_api_key_changes
Revises: 0012_metric_totals
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0013_api_key_changes"
down_revision = "0012_metric_totals"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0013_api_key_changes.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0013_api_key_changes.down.sql")
