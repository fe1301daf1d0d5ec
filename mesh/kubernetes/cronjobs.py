"""The bank's scheduled run as a CronJob: the close of business (`ogpgy cob run`), which closes
every business date due in order: the day's interest, the month's fees when a month ended, the
loans' collection; a date missed (the cluster down) is caught up by the next run.

It runs the bank's image as a client (mesh/cli_cob.py), presenting the operator's
certificate and logging in as the admin with the password from the Secret `ogpgy-admin` (the
token comes from the identity process, the run from the process serving the context). A rerun is
safe: a date closed is not closed again, one cut short resumes at its step, and each step is
idempotent per date. So a Job retried
(backoffLimit) or started again by hand does no harm, and concurrencyPolicy Forbid keeps two runs
from racing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mesh.config import MeshConfig
from mesh.kubernetes.certificates import OPERATOR
from mesh.kubernetes.meta import (
    CLIENT_LABEL,
    GRPC_PORT,
    PKI_DIR,
    Target,
    described,
    metadata,
    restricted_container_security,
    service_host,
)
from mesh.kubernetes.policies import client_policy
from mesh.kubernetes.secrets import ADMIN
from mesh.kubernetes.workloads import pod_security

_COMPONENT = "scheduled-run"


@dataclass(frozen=True)
class Run:
    """One scheduled command: its CronJob's name, schedule (UTC), the context it calls, its arguments."""

    name: str
    schedule: str
    context: str
    args: tuple[str, ...]


RUNS = (
    # Every evening at 21:30 UTC (22:30 CET, 23:30 CEST: after the bank's close time, 22:00 in
    # Europe/Amsterdam), the euro's business dates due; the interest context calls the account and
    # lending contexts itself, so the pod reaches identity and interest only.
    Run("ogpgy-close-of-business", "30 21 * * *", "interest", ("cob", "run", "--currency", "EUR")),
)


def _target(config: MeshConfig, context: str, target: Target) -> str:
    return f"dns:///{service_host(config.process_of(context).name, target)}:{GRPC_PORT}"


def _container(config: MeshConfig, run: Run, target: Target) -> dict[str, Any]:
    env = [
        {"name": "OGPGY_TARGET", "value": _target(config, run.context, target)},
        {"name": "OGPGY_IDENTITY_TARGET", "value": _target(config, "identity", target)},
        {"name": "OGPGY_CA_FILE", "value": f"{PKI_DIR}/ca.crt"},
        {"name": "OGPGY_CERT_FILE", "value": f"{PKI_DIR}/tls.crt"},
        {"name": "OGPGY_KEY_FILE", "value": f"{PKI_DIR}/tls.key"},
        {"name": "OGPGY_USERNAME", "value": "admin"},
        {"name": "OGPGY_PASSWORD", "valueFrom": {"secretKeyRef": {"name": ADMIN.name, "key": ADMIN.key}}},
        {"name": "OGPGY_DATA_DIR", "value": "/tmp"},  # nothing of the bank's there: the password is the Secret's
    ]
    return {
        "name": run.name.removeprefix("ogpgy-"),
        "image": target.image,
        "args": list(run.args),
        "env": env,
        "volumeMounts": [
            {"name": "operator", "mountPath": PKI_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": restricted_container_security(),
    }


def cronjob(config: MeshConfig, run: Run, target: Target) -> dict[str, Any]:
    labels = described(run.name, target, _COMPONENT)
    pod = {
        "metadata": {"labels": {**labels, CLIENT_LABEL: "true"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": pod_security(),
            "containers": [_container(config, run, target)],
            "volumes": [
                {"name": "operator", "secret": {"secretName": OPERATOR, "defaultMode": 0o400}},
                {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            ],
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(run.name, target, labels),
        "spec": {
            "schedule": run.schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            # A run the cluster could not start on time (down, no capacity) still starts within 20 h;
            # a day missed entirely is closed by the next run (the close catches dates up in order).
            "startingDeadlineSeconds": 20 * 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {"backoffLimit": 3, "activeDeadlineSeconds": 4 * 3600, "template": pod},
            },
        },
    }


def scheduled_runs(config: MeshConfig, target: Target) -> list[dict[str, Any]]:
    """Every CronJob and the NetworkPolicy of its pods: out to identity and the context it runs."""
    found: list[dict[str, Any]] = []
    for run in RUNS:
        calls = sorted({config.process_of("identity").name, config.process_of(run.context).name})
        found += [cronjob(config, run, target), client_policy(run.name, calls, target, _COMPONENT)]
    return found
