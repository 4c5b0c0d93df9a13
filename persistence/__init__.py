"""PostgreSQL access: the asyncpg bridge, migrations, stores, embedded server."""
