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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.config import Settings
from common.security.component import Security
from common.security.pki import CertificateAuthority, save, spiffe_id
from mesh.kubernetes.meta import FRONT_DOOR, FRONT_DOOR_PORT
from tests.netns import NetnsHosts

ROOT = Path(__file__).resolve().parents[1]
OPERATOR = "operator"


def mount_secret(folder: Path, files: dict[str, bytes]) -> None:
    """A Secret's files as the kubelet writes them: into a new timestamped folder, then the
    `..data` link swapped to it at once, each key a link through `..data`."""
    fresh = folder / f"..{time.time_ns()}"
    fresh.mkdir()
    for key, content in files.items():
        (fresh / key).write_bytes(content)
        if not (folder / key).is_symlink():
            (folder / key).symlink_to(Path("..data") / key)
    swapping = folder / "..data_tmp"
    swapping.symlink_to(fresh.name)
    swapping.replace(folder / "..data")


def _in_mounts(mounts: dict[str, str]) -> Callable[[str], str]:
    """Rewrites the paths inside a container that a text names to where this machine keeps them
    (what the container's mounts would show): in one pass, longest mount first."""
    if not mounts:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True)) + r"(?=[/;\s)\"]|$)")
    return lambda text: pattern.sub(lambda found: mounts[found.group(0)], text)


def _program(name: str) -> str:
    """A program of another image (nginx), as this machine has it."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    assert found is not None, f"{name} is missing: scripts/bootstrap installs it"
    return found


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
    """Pods of the rendered Deployments (the base's and those of `overlay` it names), each in a
    namespace of `hosts`."""

    files: dict[str, str]
    hosts: NetnsHosts
    root: Path
    secrets: dict[str, dict[str, str]]  # {Secret: {key: value}} of the env Secrets, as the operator would fill them
    config_maps: dict[str, dict[str, str]]  # {ConfigMap: {key: value}} of the overlay's literals
    overlay_files: tuple[str, ...] = ()  # the overlay's process files to run beside the base (dev: the simulator)
    pods: list[Pod] = field(default_factory=list)
    authority: CertificateAuthority = field(default_factory=CertificateAuthority.create)
    _addresses: dict[str, list[str]] = field(default_factory=dict)  # a Service's name -> its pods' addresses

    def deployments(self) -> list[dict[str, Any]]:
        """The bank's Deployments: every process file of the base, and the overlay's named ones."""
        names = [n for n in sorted(self.files) if re.fullmatch(r"base/[a-z-]+\.yaml", n)] + list(self.overlay_files)
        return [
            doc
            for name in names
            for doc in yaml.safe_load_all(self.files[name])
            if doc
            and doc["kind"] == "Deployment"
            and doc["metadata"]["labels"]["app.kubernetes.io/component"] in ("context-process", "front-door")
        ]

    def services(self) -> list[dict[str, Any]]:
        """Every Service of the files the node runs (base and the overlay's named files)."""
        names = [n for n in sorted(self.files) if re.fullmatch(r"base/[a-z-]+\.yaml", n)] + list(self.overlay_files)
        return [doc for name in names for doc in yaml.safe_load_all(self.files[name]) if doc and doc["kind"] == "Service"]

    def plan(self) -> None:
        """Assigns every replica a namespace, then prepares its volumes and environment."""
        slots = iter(zip(self.hosts.namespaces, self.hosts.addresses, strict=True))
        placed = []
        for deployment in self.deployments():
            for replica in range(deployment["spec"]["replicas"]):
                namespace, address = next(slots)
                placed.append((deployment, f"{deployment['metadata']['name']}-{replica}", namespace, address))
        for service in self.services():  # what the cluster's DNS answers: its pods (headless), or its virtual address
            host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
            wanted = service["spec"]["selector"].items()
            for deployment, _, _, address in placed:
                if wanted <= deployment["spec"]["template"]["metadata"]["labels"].items():
                    self._addresses.setdefault(host, []).append(address)
        lines = [f"{a} {host}\n" for host, addresses in self._addresses.items() for a in addresses]
        hosts_file = "127.0.0.1 localhost\n" + "".join(lines)
        for namespace in self.hosts.namespaces:  # `ip netns exec` shows /etc/netns/<namespace>/hosts as /etc/hosts
            folder = Path("/etc/netns") / namespace
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text(hosts_file)
        signing_key = self.root / "signing-key.pem"
        Security(Settings(data_dir=self.root, signing_key_path=signing_key)).public_keys()  # made as the operator would
        keys = {  # the file Secrets, each made once as the operator would: {Secret: (key, content)}
            "ogpgy-signing-key": ("identity-signing-key.pem", signing_key.read_bytes()),
            "ogpgy-page-token-key": ("page-token-key", secrets.token_bytes(32)),
            "ogpgy-network-member-key": ("velocitypay-member-key", secrets.token_hex(32).encode()),
        }
        for deployment, name, namespace, address in placed:
            self.pods += self._containers(deployment, name, namespace, address, keys)
        save(self.root / "operator", OPERATOR, self.authority.issue(spiffe_id(OPERATOR, "ogpgy")))

    def _containers(
        self, deployment: dict[str, Any], name: str, namespace: str, address: str, keys: dict[str, tuple[str, bytes]]
    ) -> list[Pod]:
        """A process per container of the pod (the first one named as the pod), its volumes
        filled once and shared, as the containers of a pod share them."""
        spec = deployment["spec"]["template"]["spec"]
        folders = {}
        for volume in spec["volumes"]:
            folder = self.root / name / volume["name"]
            folder.mkdir(parents=True, exist_ok=True)
            self._fill(volume, folder, keys, deployment, address)
            folders[volume["name"]] = str(folder)
        return [
            self._container(container, f"{name}/{container['name']}" if index else name, namespace, address, folders)
            for index, container in enumerate(spec["containers"])
        ]

    def _container(self, container: dict[str, Any], name: str, namespace: str, address: str, folders: dict[str, str]) -> Pod:
        mounts = {mount["mountPath"]: folders[mount["name"]] for mount in container["volumeMounts"]}
        local = _in_mounts(mounts)  # a path inside the container, as this machine has it

        env = {"PATH": "/usr/bin:/bin", "GRPC_DNS_RESOLVER": "native"}  # names from /etc/hosts: the cluster DNS's stand-in
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = local(variable["value"])
            elif "fieldRef" in variable["valueFrom"]:
                env[variable["name"]] = name.split("/")[0]  # metadata.name
            elif "configMapKeyRef" in variable["valueFrom"]:
                ref = variable["valueFrom"]["configMapKeyRef"]
                env[variable["name"]] = self.config_maps[ref["name"]][ref["key"]]
            else:
                ref = variable["valueFrom"]["secretKeyRef"]
                env[variable["name"]] = self.secrets[ref["name"]][ref["key"]]
        if "command" in container:  # another image than the bank's: its program from this machine
            program = [_program(container["command"][0]), *(local(a) for a in container["command"][1:])]
            for conf in (c for folder in mounts.values() for c in Path(folder).glob("*.conf")):
                conf.write_text(local(conf.read_text()))  # what the configuration names, as the mounts show it
        else:
            program = [*entrypoint(), *(local(a) for a in container["args"])]
        command = [*self.hosts.wrap(self.hosts.namespaces.index(namespace)), *program]
        process = container["name"]
        probes = {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe") if kind in container}
        log = self.root / name.split("/")[0] / f"{container['name']}.log"
        return Pod(name, process, namespace, address, command, env, log, probes)

    def _fill(
        self, volume: dict[str, Any], folder: Path, keys: dict[str, tuple[str, bytes]], deployment: dict[str, Any], address: str
    ) -> None:
        if "configMap" in volume and volume["configMap"]["name"] == FRONT_DOOR:
            (folder / "nginx.conf").write_text(self.files["base/front-door.conf"])
        elif "configMap" in volume:
            (folder / "mesh.toml").write_text(self.files["base/mesh.toml"])
        elif "emptyDir" in volume:
            folder.chmod(0o777)  # as the kubelet makes an emptyDir: any user of the pod writes there
        elif "secret" in volume and volume["secret"]["secretName"] == FRONT_DOOR:
            self._door_certificate(folder, deployment, address)
        elif "secret" in volume:  # a key Secret: the one file the pod reads
            key, content = keys[volume["secret"]["secretName"]]
            (folder / key).write_bytes(content)
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

    def _door_certificate(self, folder: Path, deployment: dict[str, Any], address: str) -> None:
        """What cert-manager writes into the door's Secret (kubernetes.io/tls), as the rendered
        Certificate asks (its URI and names; and the pod's address, which the test's client
        dials), laid out as the kubelet mounts a Secret: the files behind a `..data` link it swaps."""
        certificate = next(
            doc["spec"]
            for doc in yaml.safe_load_all(self.files["base/front-door.yaml"])
            if doc["kind"] == "Certificate" and doc["spec"]["secretName"] == FRONT_DOOR
        )
        issued = self.authority.issue(certificate["uris"][0], hosts=[*certificate["dnsNames"], address])
        files = {"tls.crt": issued.certificate, "tls.key": issued.private_key, "ca.crt": self.authority.certificate_pem}
        mount_secret(folder, files)

    def renew_door_certificates(self) -> None:
        """cert-manager's renewal of the door's certificate, as each door pod's kubelet shows it."""
        for pod in (p for p in self.pods if p.process == "nginx"):
            door = next(d for d in self.deployments() if d["metadata"]["name"] == FRONT_DOOR)
            self._door_certificate(self.root / pod.name / "tls", door, pod.address)

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

    def front_door(self) -> str:
        """The door's pods as an ipv4: target on its TLS port, for a client in the root namespace."""
        return "ipv4:" + ",".join(f"{p.address}:{FRONT_DOOR_PORT}" for p in self.pods if p.process == "nginx")

    def targets(self, contexts: dict[str, str]) -> dict[str, str]:
        """{context: the pods of its process, as an ipv4: target} for a client in the root namespace."""
        return {
            context: "ipv4:" + ",".join(f"{p.address}:7100" for p in self.pods if p.process == process)
            for context, process in contexts.items()
        }
