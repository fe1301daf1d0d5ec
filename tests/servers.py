"""Real servers for the tests, started and stopped by the tests themselves (by their PIDs): the
mesh's own local servers, throw-away (no data_dir/root)."""

from __future__ import annotations

from pathlib import Path

from mesh import local_servers
from mesh.local_servers import RedisServer, free_port

__all__ = ["VOLATILE_DATABASE_ENV", "PostgresServer", "RedisServer", "free_port"]

# A bank refuses a PostgreSQL server that may lose what it acknowledged, unless told it may use
# one: the tests tell every bank they start (tests/conftest.py), in process and in subprocesses.
VOLATILE_DATABASE_ENV = "OGPGY_ALLOW_VOLATILE_DATABASE"


class PostgresServer(local_servers.PostgresServer):
    """A throw-away cluster with fsync off: nothing it holds has to outlive the test session, and
    syncing would only slow the tests down."""

    def __init__(self, root: Path | None = None, port: int = 0, host: str = "127.0.0.1", trusted_network: str = "") -> None:
        super().__init__(root, port, host, trusted_network, fsync=False)
