"""Alembic environment for Conveyor: run by `conveyor migrate` (conveyor.db.migrations)."""

from alembic import context

from conveyor.db.migrations import VERSION_TABLE, prepare_schema

config = context.config
connection = config.attributes["connection"]
schema = config.attributes["schema"]

context.configure(
    connection=connection,
    version_table=VERSION_TABLE,
    version_table_schema=schema,
    transactional_ddl=True,
)

with context.begin_transaction():
    prepare_schema(connection, schema)
    context.run_migrations()
