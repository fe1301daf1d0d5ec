"""The mesh across hosts: contexts in separate network namespaces (made and removed by the test),
each listening on its own host's address, Redis and PostgreSQL on the bridge's; the story passes.
Where namespaces are not allowed, the test says so and runs the same topology on loopback."""

from __future__ import annotations

import warnings

from mesh.config import ProcessSpec, load_mesh_config
from mesh.distributed import Mesh
from mesh.embedded import CONTEXT_NAMES
from mesh.local_servers import MailServer, PostgresServer, RedisServer
from tests.conftest import ADMIN_PASSWORD
from tests.integration.test_mesh_modes import CONTEXTS, the_story
from tests.local_mesh import mesh_root, write_mesh
from tests.netns import NetnsHosts
from tests.servers import free_port

# host -> processes (a process is a kind and its contexts): identity and customer share a process
HOSTS = [
    {"front": ["identity", "customer"]},
    {"account": ["account"], "interest": ["interest"]},
    {"payment": ["payment"], "lending": ["lending"], "notification": ["notification"], "velocitypay": ["velocitypay"]},
]


def _processes(addresses: list[str]) -> list[ProcessSpec]:
    return [
        ProcessSpec(name, tuple(contexts), (f"{addresses[host]}:{free_port()}",))
        for host, processes in enumerate(HOSTS)
        for name, contexts in processes.items()
    ]


async def test_the_story_across_hosts() -> None:
    hosts = NetnsHosts(len(HOSTS))
    why_not = hosts.create()
    if why_not:
        warnings.warn(f"{why_not}: running the same topology as separate processes on loopback", stacklevel=1)
    gateway = "127.0.0.1" if why_not else hosts.gateway
    addresses = ["127.0.0.1"] * len(HOSTS) if why_not else hosts.addresses
    root = mesh_root("ogpgy-hosts-")
    redis = RedisServer(host=gateway)
    mail = MailServer(host=gateway)
    postgres = PostgresServer(host=gateway, trusted_network="" if why_not else hosts.network)
    mesh = None
    try:
        redis.start()
        postgres.start()
        mail.start()
        path = write_mesh(root, _processes(addresses), redis=redis.url, postgres=postgres.new_database(), smtp=mail.url)
        config = load_mesh_config(path, known_contexts=CONTEXT_NAMES)
        host_of = {name: host for host, processes in enumerate(HOSTS) for name in processes}
        mesh = Mesh(
            path,
            config,
            admin_password=ADMIN_PASSWORD,
            wrap=(lambda process, index: []) if why_not else (lambda process, index: hosts.wrap(host_of[process])),
        )
        mesh.start()
        for replica in mesh.replicas:
            assert replica.address.startswith(addresses[host_of[replica.process]]), "each process listens on its host's address"
        await the_story({c: config.target(c) for c in CONTEXTS}, mesh.tls)
    finally:
        if mesh is not None:
            mesh.stop()
        redis.stop()
        mail.stop()
        postgres.stop()
        postgres.remove()
        hosts.remove()
