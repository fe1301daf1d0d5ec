"""A PostgreSQL role per process, owning its contexts' schemas and nothing else.

Each context keeps its tables in a schema named after it (common/db/postgres.py); a process serves
one or more contexts. Its role owns those schemas (so its migrations create tables in them) and
has no CREATE on the database (only CONNECT and TEMPORARY, its session's own scratch tables),
nothing on another context's schema, and nothing on `public`: a
process that is broken into reads and writes its own contexts' data only. The SQL is idempotent
(run it again after adding a process) and carries no password: the operator sets each role's
password to match the DSN in its Secret (README).
"""

from __future__ import annotations

from collections.abc import Iterable

from mesh.config import ProcessSpec


def role_of(process: str) -> str:
    """The PostgreSQL role a process logs in as (`ogpgy_account`)."""
    return "ogpgy_" + process.replace("-", "_")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _role_statements(spec: ProcessSpec) -> list[str]:
    role = role_of(spec.name)
    literal = "'" + role.replace("'", "''") + "'"
    lines = [
        "DO $$ BEGIN",
        f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {literal}) THEN",
        f"    CREATE ROLE {_quoted(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;",
        "  END IF;",
        "END $$;",
        f"REVOKE ALL ON DATABASE {{database}} FROM {_quoted(role)};",
        # TEMPORARY: the set-based postings stage their rows in a session's temporary table.
        f"GRANT CONNECT, TEMPORARY ON DATABASE {{database}} TO {_quoted(role)};",
    ]
    for context in spec.contexts:
        lines += [
            f"CREATE SCHEMA IF NOT EXISTS {_quoted(context)} AUTHORIZATION {_quoted(role)};",
            f"ALTER SCHEMA {_quoted(context)} OWNER TO {_quoted(role)};",
            f"REVOKE ALL ON SCHEMA {_quoted(context)} FROM PUBLIC;",
        ]
    return lines


def roles_sql(processes: Iterable[ProcessSpec], database: str = "ogpgy") -> str:
    """The statements that create every process's role and schemas, run by a superuser (or the
    database's owner) on the bank's database."""
    db = _quoted(database)
    lines = [
        "-- Rendered by `ogpgy deploy kubernetes`: one role per process, owning its contexts' schemas.",
        "-- Run as the database's owner on the bank's database (psql -v ON_ERROR_STOP=1 -f); set each role's password afterwards:",
        "--   ALTER ROLE ogpgy_<process> PASSWORD '...';   (the password of its DSN Secret)",
        f"REVOKE CREATE, TEMPORARY ON DATABASE {db} FROM PUBLIC;",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC;",
    ]
    for spec in processes:
        lines.append(f"-- {spec.name}: {', '.join(spec.contexts)}")
        lines += [line.replace("{database}", db) for line in _role_statements(spec)]
    return "\n".join(lines) + "\n"


def dsn_of(process: str, host: str, database: str = "ogpgy", password: str = "") -> str:
    """A process's DSN: its role on the bank's database (the password, where there is one, is the operator's)."""
    secret = f":{password}" if password else ""
    return f"postgresql://{role_of(process)}{secret}@{host}/{database}"
