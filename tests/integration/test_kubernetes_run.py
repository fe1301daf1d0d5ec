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
import time

import psycopg
import pytest

from common.grpc.tls import channel_credentials
from common.security.pki import load
from mesh.config import DEFAULT_CONFIG, load_mesh_config
from mesh.embedded import ALL_MODULES, CONTEXT_NAMES
from mesh.kubernetes import GRPC_PORT, Target, render
from mesh.kubernetes.database import dsn_of, roles_sql
from mesh.local_servers import MailServer, PostgresServer, RedisServer
from tests.conftest import ADMIN_PASSWORD
from tests.integration.test_mesh_modes import CONTEXTS, mesh_bank, mesh_client, the_story
from tests.kubelet import Kubelet, grpc_probe
from tests.local_mesh import mesh_root
from tests.netns import NetnsHosts
from tests.pods import OPERATOR, Node

pytestmark = pytest.mark.slow


async def test_the_rendered_manifests_run_the_story_and_a_killed_pod_comes_back() -> None:
    config = load_mesh_config(DEFAULT_CONFIG, environ={}, known_contexts=CONTEXT_NAMES)
    files = render(config, Target(), ALL_MODULES)
    pods = sum(spec.replica_count for spec in config.processes)
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
