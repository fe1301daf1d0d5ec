"""Real servers for the tests, started and stopped by the tests themselves (by their PIDs): the
mesh's own local servers, throw-away (no data_dir/root)."""

from mesh.local_servers import PostgresServer, RedisServer, free_port

__all__ = ["PostgresServer", "RedisServer", "free_port"]
