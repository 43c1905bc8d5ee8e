"""The database seam: named queries, connections, migrations, the embedded server."""
