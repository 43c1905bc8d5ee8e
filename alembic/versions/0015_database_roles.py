"""Least-privilege database roles: partition upkeep with the owner's rights, grant_access_v1.

Revision ID: 0015_database_roles
Revises: 0014_imported_jobs
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = "0015_database_roles"
down_revision = "0014_imported_jobs"


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0015_database_roles.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "0015_database_roles.down.sql")
