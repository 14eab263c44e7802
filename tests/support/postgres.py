"""The local PostgreSQL server (127.0.0.1:5432, trust auth) for store tests.

`fresh_database()` makes a database with a random name and drops it afterwards
(with `WITH (FORCE)`, so connections a test left open do not block the drop), and
any role named `<database>_reader` a test made. `admin()` is a connection to the
`postgres` database for such statements.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@contextlib.asynccontextmanager
async def admin() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(**PG, database="postgres")
    try:
        yield connection
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def fresh_database(prefix: str = "gw_store") -> AsyncIterator[str]:
    """A new, empty database's name, dropped on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    async with admin() as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        async with admin() as conn:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await conn.execute(f'DROP ROLE IF EXISTS "{name}_reader"')


def pg_url(name: str, user: str = "postgres") -> str:
    """The gateway's session URL for database `name`."""
    return f"postgresql+asyncpg://{user}@127.0.0.1:5432/{name}"
