"""Hosts for multi-host tests: network namespaces on a bridge, created and removed by the test.

Each host is a namespace with one veth into a bridge in the root namespace; the root side of the
bridge (the "gateway") is where the tests and the shared servers (Redis, PostgreSQL) live. Where
the machine does not allow namespaces, `NetnsHosts.create` says why and the caller falls back to
loopback.
"""

from __future__ import annotations

import random
import secrets
import subprocess


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


class NetnsHosts:
    def __init__(self, hosts: int) -> None:
        tag = secrets.token_hex(2)
        octet = random.randint(100, 250)
        self.bridge = f"ogbr{tag}"
        self.namespaces = [f"ogpgy-{tag}-{i}" for i in range(hosts)]
        self.veths = [f"ogv{tag}{i}" for i in range(hosts)]
        self.gateway = f"10.{octet}.0.1"
        self.network = f"10.{octet}.0.0/24"
        self.addresses = [f"10.{octet}.0.{10 + i}" for i in range(hosts)]
        self.created: list[str] = []

    def create(self) -> str:
        """Builds the topology; returns '' on success, or why namespaces are not available."""
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self.created.append("bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for namespace, veth, address in zip(self.namespaces, self.veths, self.addresses, strict=True):
                _ip("netns", "add", namespace)
                self.created.append(namespace)
                _ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
                _ip("link", "set", f"{veth}p", "netns", namespace)
                _ip("link", "set", veth, "master", self.bridge)
                _ip("link", "set", veth, "up")
                _ip("netns", "exec", namespace, "ip", "addr", "add", f"{address}/24", "dev", f"{veth}p")
                _ip("netns", "exec", namespace, "ip", "link", "set", f"{veth}p", "up")
                _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = exc.stderr.decode().strip() if isinstance(exc, subprocess.CalledProcessError) and exc.stderr else str(exc)
            self.remove()
            return f"network namespaces are not available here ({detail})"
        return ""

    def wrap(self, host: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[host]]

    def remove(self) -> None:
        """Deletes what create() made (a namespace's veth goes with it), by name."""
        for name in reversed(self.created):
            if name == "bridge":
                subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=20)
            else:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        self.created.clear()
