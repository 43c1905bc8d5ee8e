"""The import ledger: the jobs `conveyor import procrastinate` moved, each imported once.

Revision ID: 0014_imported_jobs
Revises: 0013_api_key_changes
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0014_imported_jobs"
down_revision = "0013_api_key_changes"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0014_imported_jobs.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0014_imported_jobs.down.sql")
