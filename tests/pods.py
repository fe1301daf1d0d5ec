"""A stand-in for a Kubernetes node, enough to run the rendered manifests on this machine: each pod
of each Deployment becomes a process in a network namespace of its own, started with its
container's exact arguments and environment (the image's ENTRYPOINT from the Containerfile, `ogpgy`
being `python -m mesh.cli` here), its volumes as directories holding what the ConfigMap and the
Secrets would, and the Services' names in the namespace's /etc/hosts (what cluster DNS answers
for a headless Service: every pod's address). The kubelet's part (probes, restarts) is
tests/kubelet.py."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.config import Settings
from common.security.component import Security
from common.security.pki import CertificateAuthority, save, spiffe_id
from tests.netns import NetnsHosts

ROOT = Path(__file__).resolve().parents[1]
OPERATOR = "operator"


def entrypoint() -> list[str]:
    """The image's ENTRYPOINT, with `ogpgy` as this checkout runs it."""
    line = next(line for line in (ROOT / "Containerfile").read_text().splitlines() if line.startswith("ENTRYPOINT"))
    command: list[str] = json.loads(line.removeprefix("ENTRYPOINT").strip())
    assert command[0] == "ogpgy", command
    return [sys.executable, "-m", "mesh.cli", *command[1:]]


@dataclass
class Pod:
    name: str
    process: str
    namespace: str
    address: str
    command: list[str]
    env: dict[str, str]
    log: Path
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # startupProbe, livenessProbe, readinessProbe
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0


@dataclass
class Node:
    """Pods of the rendered Deployments, each in a namespace of `hosts`."""

    files: dict[str, str]
    hosts: NetnsHosts
    root: Path
    secrets: dict[str, str]  # the Secret ogpgy-secrets, as the operator would fill it
    pods: list[Pod] = field(default_factory=list)
    authority: CertificateAuthority = field(default_factory=CertificateAuthority.create)
    _addresses: dict[str, list[str]] = field(default_factory=dict)  # a Service's name -> its pods' addresses

    def deployments(self) -> list[dict[str, Any]]:
        return [
            doc
            for name, text in sorted(self.files.items())
            if name.endswith(".yaml") and "/" not in name and name != "kustomization.yaml"
            for doc in yaml.safe_load_all(text)
            if doc and doc["kind"] == "Deployment"
        ]

    def plan(self) -> None:
        """Assigns every replica a namespace, then prepares its volumes and environment."""
        slots = iter(zip(self.hosts.namespaces, self.hosts.addresses, strict=True))
        placed = []
        for deployment in self.deployments():
            for replica in range(deployment["spec"]["replicas"]):
                namespace, address = next(slots)
                placed.append((deployment, f"{deployment['metadata']['name']}-{replica}", namespace, address))
        for deployment, _, _, address in placed:
            host = f"{deployment['metadata']['name']}.{deployment['metadata']['namespace']}.svc.cluster.local"
            self._addresses.setdefault(host, []).append(address)
        lines = [f"{a} {host}\n" for host, addresses in self._addresses.items() for a in addresses]
        hosts_file = "127.0.0.1 localhost\n" + "".join(lines)
        for namespace in self.hosts.namespaces:  # `ip netns exec` shows /etc/netns/<namespace>/hosts as /etc/hosts
            folder = Path("/etc/netns") / namespace
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text(hosts_file)
        page_key = secrets.token_bytes(32)
        signing_key = self.root / "signing-key.pem"
        Security(Settings(data_dir=self.root, signing_key_path=signing_key)).public_keys()  # made as the operator would
        for deployment, name, namespace, address in placed:
            self.pods.append(self._pod(deployment, name, namespace, address, page_key, signing_key))
        save(self.root / "operator", OPERATOR, self.authority.issue(spiffe_id(OPERATOR, "ogpgy")))

    def _pod(
        self, deployment: dict[str, Any], name: str, namespace: str, address: str, page_key: bytes, signing_key: Path
    ) -> Pod:
        pod_root = self.root / name
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {}
        for mount in container["volumeMounts"]:
            folder = pod_root / mount["name"]
            folder.mkdir(parents=True, exist_ok=True)
            self._fill(volumes[mount["name"]], folder, page_key, signing_key, deployment, address)
            mounts[mount["mountPath"]] = str(folder)

        def local(value: str) -> str:  # a path inside the container, as this machine has it
            for path in sorted(mounts, key=len, reverse=True):
                if value == path or value.startswith(path + "/"):
                    return mounts[path] + value[len(path) :]
            return value

        env = {"PATH": "/usr/bin:/bin", "GRPC_DNS_RESOLVER": "native"}  # names from /etc/hosts: the cluster DNS's stand-in
        for variable in container["env"]:
            if "value" in variable:
                env[variable["name"]] = local(variable["value"])
            elif "fieldRef" in variable["valueFrom"]:
                env[variable["name"]] = name  # metadata.name
            else:
                env[variable["name"]] = self.secrets[variable["valueFrom"]["secretKeyRef"]["key"]]
        command = [
            *self.hosts.wrap(self.hosts.namespaces.index(namespace)),
            *entrypoint(),
            *(local(a) for a in container["args"]),
        ]
        process = container["name"]
        probes = {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe") if kind in container}
        return Pod(name, process, namespace, address, command, env, pod_root / "log", probes)

    def _fill(
        self, volume: dict[str, Any], folder: Path, page_key: bytes, signing_key: Path, deployment: dict[str, Any], address: str
    ) -> None:
        if "configMap" in volume:
            (folder / "mesh.toml").write_text(self.files["mesh.toml"])
        elif "secret" in volume and volume["secret"]["secretName"] == "ogpgy-secrets":
            (folder / "page-token-key").write_bytes(page_key)
        elif "secret" in volume:  # the signing key
            shutil.copy(signing_key, folder / "identity-signing-key.pem")
        elif "projected" in volume:
            self._certificates(volume["projected"]["sources"], folder, deployment, address)

    def _certificates(self, sources: list[dict[str, Any]], folder: Path, deployment: dict[str, Any], address: str) -> None:
        """What cert-manager would write into the Secrets, laid out as the projection says; the
        server certificate also names the pods' addresses, which the test's client (outside the
        cluster's DNS) dials."""
        (folder / "ca.pem").write_bytes(self.authority.certificate_pem)
        host = f"{deployment['metadata']['name']}.{deployment['metadata']['namespace']}.svc.cluster.local"
        for source in sources:
            secret = source["secret"]["name"]
            matched = re.fullmatch(r"ogpgy-(server|context)-(.+)", secret)
            assert matched is not None, f"a certificate Secret the node does not know: {secret}"
            kind, name = matched.groups()
            identity = spiffe_id("process" if kind == "server" else "context", name)
            issued = self.authority.issue(identity, hosts=[host, *self._addresses[host]] if kind == "server" else [])
            directory = folder / ("servers" if kind == "server" else "contexts")
            directory.mkdir(exist_ok=True)
            save(directory, name, issued)

    def start(self, pod: Pod) -> None:
        with pod.log.open("ab") as output:
            pod.proc = subprocess.Popen(pod.command, stdout=output, stderr=subprocess.STDOUT, env=pod.env)

    def start_all(self) -> None:
        for pod in self.pods:
            self.start(pod)

    def restart(self, pod: Pod) -> None:
        """The kubelet's restart of a container whose startup or liveness probe failed."""
        if pod.proc is not None and pod.proc.poll() is None:
            pod.proc.kill()
            pod.proc.wait(timeout=10)
        pod.restarts += 1
        self.start(pod)

    def stop(self) -> None:
        for pod in self.pods:
            if pod.proc is not None and pod.proc.poll() is None:
                pod.proc.terminate()
        deadline = time.monotonic() + 20
        for pod in self.pods:
            if pod.proc is not None:
                try:
                    pod.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pod.proc.kill()
                    pod.proc.wait(timeout=10)
        for namespace in self.hosts.namespaces:
            shutil.rmtree(Path("/etc/netns") / namespace, ignore_errors=True)

    def targets(self, contexts: dict[str, str]) -> dict[str, str]:
        """{context: the pods of its process, as an ipv4: target} for a client in the root namespace."""
        return {
            context: "ipv4:" + ",".join(f"{p.address}:7100" for p in self.pods if p.process == process)
            for context, process in contexts.items()
        }
