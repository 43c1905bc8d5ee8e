"""The jobs table checks its values with domains (cheaper per statement than CHECKs).

Revision ID: 0003_job_domains
Revises: 0002_scheduler
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0003_job_domains"
down_revision = "0002_scheduler"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0003_job_domains.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0003_job_domains.down.sql")
