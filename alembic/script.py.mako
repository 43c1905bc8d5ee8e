"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from alembic import context, op

from conveyor.db.migrations import apply_sql_file

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}


def upgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "${up_revision}.up.sql")


def downgrade() -> None:
    apply_sql_file(op.get_bind(), context.config.attributes["schema"], "${up_revision}.down.sql")
