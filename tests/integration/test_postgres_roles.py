"""The PostgreSQL roles `ogpgy deploy kubernetes` renders, on a real PostgreSQL: a process's role
runs its contexts (their schemas, migrations and units of work) and is refused everything else:
another context's schema, a schema of its own making, the `public` schema."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from common.db.migrations import load_migrations
from common.db.postgres import PostgresDatabase
from mesh.config import ProcessSpec
from mesh.kubernetes.database import dsn_of, roles_sql
from tests.servers import PostgresServer

CORE = ProcessSpec("core", ("account", "payment"), ("127.0.0.1:7102",))
LENDING = ProcessSpec("lending", ("lending",), ("127.0.0.1:7105",))


def _roles(postgres: PostgresServer) -> tuple[str, str, str]:
    """A fresh database with the rendered roles applied by its owner; (owner's, core's, lending's DSN)."""
    dsn = postgres.new_database()
    database = dsn.rsplit("/", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as owner:
        owner.execute(roles_sql([CORE, LENDING], database))
        owner.execute(roles_sql([CORE, LENDING], database))  # idempotent: applied again after a change
    host = dsn.split("@", 1)[1].split("/", 1)[0]
    return dsn, dsn_of("core", host, database), dsn_of("lending", host, database)


def _refused(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


async def _migrated_names(db: PostgresDatabase) -> list[str]:
    async def unit(tx: Any) -> list[str]:
        return [row["name"] for row in await tx.fetchall("SELECT name FROM schema_migrations ORDER BY scope, version")]

    return await db.read(unit)


def test_postgres_checks_create_on_the_database_before_if_not_exists(postgres: PostgresServer) -> None:
    """Why PostgresDatabase looks for its schema first: the role owns `account`, and still its
    `CREATE SCHEMA IF NOT EXISTS account` is refused."""
    _, core, _ = _roles(postgres)
    _refused(core, "CREATE SCHEMA IF NOT EXISTS account")


async def test_a_process_role_runs_its_contexts_and_is_refused_the_others(postgres: PostgresServer) -> None:
    _, core, lending = _roles(postgres)
    for context in CORE.contexts:  # twice each: a restart finds its schema and migrations in place
        for _ in range(2):
            db = PostgresDatabase(core, schema=context)
            await db.open(load_migrations(f"services.{context}", "postgres"))
            try:
                assert await _migrated_names(db), f"{context}: migrations applied by the process's own role"
            finally:
                await db.close()
    with psycopg.connect(core, autocommit=True) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'account'").fetchone()
        assert tables is not None and tables[0] > 1
        conn.execute("SELECT count(*) FROM payment.schema_migrations")  # both of its contexts' schemas

    _refused(lending, "SELECT count(*) FROM account.schema_migrations")
    _refused(lending, "CREATE TABLE account.stolen (x int)")
    _refused(lending, "CREATE SCHEMA lending_spare")
    _refused(lending, "CREATE TABLE public.stray (x int)")
    intruder = PostgresDatabase(lending, schema="account")  # a process pointed at another context's schema:
    # without USAGE on it the schema is not even on its search_path, so nothing can be created there
    with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidSchemaName)):
        await intruder.open(load_migrations("services.account", "postgres"))
    await intruder.close()


async def test_a_missing_schema_is_still_created_where_the_role_may(postgres: PostgresServer) -> None:
    """A database owner's DSN (the launcher's `up --distributed`) still has its schemas made on first start."""
    owner, _, _ = _roles(postgres)
    db = PostgresDatabase(owner, schema="fresh_context")
    await db.open([])
    try:
        assert await _migrated_names(db)
    finally:
        await db.close()
