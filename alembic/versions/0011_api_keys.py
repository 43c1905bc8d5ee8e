"""API keys of the HTTP service: name, role, the token's prefix and the hash of its secret.

Revision ID: 0011_api_keys
Revises: 0010_job_control
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0011_api_keys"
down_revision = "0010_job_control"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0011_api_keys.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0011_api_keys.down.sql")
