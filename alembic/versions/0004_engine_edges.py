"""A job's errors and hand-backs are bounded.

Revision ID: 0004_engine_edges
Revises: 0003_job_domains
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0004_engine_edges"
down_revision = "0003_job_domains"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0004_engine_edges.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0004_engine_edges.down.sql")
