"""The rendered Kubernetes manifests, run: every pod of every Deployment a process in a network
namespace of its own (tests/pods.py), started with its container's arguments and environment, its
Services' names in /etc/hosts; Redis, PostgreSQL and the mail server outside, as the Secrets say: the
base's processes and the dev overlay's payment network simulator, each process logged in to
PostgreSQL as its own role (the rendered roles SQL applied first, as the operator does).
Pods are ready when the kubelet's own probes say so (tests/kubelet.py: plaintext gRPC health, no
certificate, at the probes' periods and thresholds). The README story passes; a pod's process
killed comes back (as the kubelet restarts it) and serves."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
import yaml
from ogpgy_client import BankClient

from common.grpc.tls import channel_credentials
from common.security.pki import load
from mesh.config import DEFAULT_CONFIG, load_mesh_config
from mesh.embedded import ALL_MODULES, CONTEXT_NAMES
from mesh.kubernetes import GRPC_PORT, Target, render
from mesh.kubernetes.database import dsn_of, roles_sql
from mesh.kubernetes.meta import FRONT_DOOR_PORT
from mesh.local_servers import MailServer, PostgresServer, RedisServer
from ogpgy.customer.v1 import customer_service_pb2 as cpb
from tests.conftest import ADMIN_PASSWORD
from tests.integration.test_mesh_modes import CONTEXTS, mesh_bank, mesh_client, the_story
from tests.kubelet import Kubelet, grpc_probe
from tests.local_mesh import mesh_root
from tests.netns import NetnsHosts
from tests.pods import OPERATOR, Node

pytestmark = pytest.mark.slow


async def _through_the_front_door(node: Node, root: Path) -> None:
    """The door's pod (nginx, its configuration as rendered) passes the story over gRPC to a
    caller with the bank's CA and no certificate, BankClient's calls, and a Connect call (curl)."""
    door = next(f"{p.address}:{FRONT_DOOR_PORT}" for p in node.pods if p.process == "nginx")
    ca = root / "ca.pem"
    ca.write_bytes(node.authority.certificate_pem)
    await the_story({context: door for context in CONTEXTS}, channel_credentials(ca.read_bytes()), interest=False, again="door-")
    async with BankClient(door, username="admin", password=ADMIN_PASSWORD, ca_file=ca) as bank:
        listed = await bank.customers.ListCustomers(cpb.ListCustomersRequest(page_size=1))
        assert listed.customers
    url = f"https://{door}/ogpgy.identity.v1.IdentityService/GetSigningKeys"
    curl = ["curl", "-sS", "--fail-with-body", "--cacert", str(ca), "-H", "content-type: application/json", "-d", "{}", url]
    connect = await asyncio.to_thread(subprocess.run, curl, capture_output=True, text=True, timeout=10)
    assert connect.returncode == 0 and "jwksJson" in connect.stdout, connect.stdout + connect.stderr


async def _a_renewed_door_certificate_is_served(node: Node) -> None:
    """cert-manager renews the door's certificate into its Secret (the kubelet swaps the mounted
    files); the door's reloader sidecar has nginx present the new one, with no restart."""
    door = next(p for p in node.pods if p.process == "nginx")

    def served() -> str:
        return ssl.get_server_certificate((door.address, FRONT_DOOR_PORT), timeout=5)

    before = await asyncio.to_thread(served)
    node.renew_door_certificates()
    deadline = time.monotonic() + 40
    while await asyncio.to_thread(served) == before:
        assert time.monotonic() < deadline, "the renewed certificate was not served within 40 s (nginx not reloaded)"
        await asyncio.sleep(1)
    assert door.restarts == 0


async def test_the_rendered_manifests_run_the_story_and_a_killed_pod_comes_back() -> None:
    config = load_mesh_config(DEFAULT_CONFIG, environ={}, known_contexts=CONTEXT_NAMES)
    files = render(config, Target(), ALL_MODULES)
    door = next(d for d in yaml.safe_load_all(files["base/front-door.yaml"]) if d["kind"] == "Deployment")
    pods = sum(spec.replica_count for spec in config.processes) + door["spec"]["replicas"]
    hosts = NetnsHosts(pods)
    why_not = hosts.create()
    if why_not:
        pytest.fail(f"the manifest-driven run needs network namespaces: {why_not}")
    root = mesh_root("ogpgy-k8s-")
    redis, mail = RedisServer(host=hosts.gateway), MailServer(host=hosts.gateway)
    postgres = PostgresServer(host=hosts.gateway, trusted_network=hosts.network)
    node = None
    try:
        redis.start()
        postgres.start()
        mail.start()
        dsn = postgres.new_database()
        database = dsn.rsplit("/", 1)[1]
        with psycopg.connect(dsn, autocommit=True) as superuser:  # the operator applies the rendered roles
            superuser.execute(roles_sql(config.processes, database))
        host = dsn.split("@", 1)[1].split("/", 1)[0]
        secrets = {
            "ogpgy-admin": {"OGPGY_ADMIN_PASSWORD": ADMIN_PASSWORD},
            "ogpgy-redis": {"OGPGY_REDIS_URL": redis.url},
            "ogpgy-smtp": {"OGPGY_SMTP_URL": mail.url},
            **{f"ogpgy-db-{p.name}": {"OGPGY_POSTGRES_DSN": dsn_of(p.name, host, database)} for p in config.processes},
        }
        network = {"OGPGY_VELOCITYPAY_TARGET": f"dns:///ogpgy-velocitypay.ogpgy.svc.cluster.local:{GRPC_PORT}"}
        node = Node(files, hosts, root, secrets, {"ogpgy-payment-network": network}, ("overlays/dev/velocitypay.yaml",))
        node.plan()
        node.start_all()
        credentials = channel_credentials(node.authority.certificate_pem, load(root / "operator", OPERATOR))
        async with Kubelet(node) as kubelet:
            await kubelet.until_ready(within=120)
            first = node.pods[0]
            before = {**first.probes["readinessProbe"], "grpc": {"port": GRPC_PORT, "service": "readiness"}}
            assert not await grpc_probe(first.address, before), "a probe of the mutual TLS port (as rendered before) never passes"
            contexts = {context: config.process_of(context).name for context in CONTEXTS}
            await the_story(node.targets(contexts), credentials)
            await _through_the_front_door(node, root)
            await _a_renewed_door_certificate_is_served(node)

            victim = next(p for p in node.pods if p.process == "account")
            assert victim.proc is not None
            victim.proc.kill()
            victim.proc.wait(timeout=10)
            assert not await grpc_probe(victim.address, victim.probes["readinessProbe"])
            restarted_by = time.monotonic() + 10
            while victim.restarts == 0:  # the kubelet sees the container exit and starts it again
                assert time.monotonic() < restarted_by, "the kubelet did not start the dead pod's process again"
                await asyncio.sleep(0.1)
            await kubelet.until_ready(within=60)  # and its probes pass again
            async with mesh_client(node.targets(contexts), credentials) as channels:  # the restarted pod serves and consumes
                bank = mesh_bank(channels)
                account = await bank.default_account(await bank.verified_customer("after-restart"), within=30)
            assert account.account_id.startswith("acc_")
            restarts = {p.name: p.restarts for p in node.pods if p.restarts}
            assert restarts == {victim.name: 1}, "probed all along, no other pod was restarted"
    finally:
        if node is not None:
            node.stop()
        redis.stop()
        mail.stop()
        postgres.stop()
        postgres.remove()
        hosts.remove()
