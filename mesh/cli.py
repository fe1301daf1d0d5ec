"""`ogpgy`: the bank's command line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from common.config import Settings
from common.grpc.server import stop_signal
from common.observability.logs import RPC_LOGGER, JsonFormatter
from common.observability.metrics import serve_metrics
from mesh import kubernetes
from mesh.cli_cob import add_cob_command, run_cob
from mesh.cli_dead_letters import add_dead_letters_command, run_dead_letters
from mesh.cli_embedded import add_up_command, up_embedded
from mesh.cli_operator import Subcommands, add_operator_commands, run_operator
from mesh.cli_payments import add_payments_command, run_payments
from mesh.cli_sagas import add_sagas_commands, run_sagas
from mesh.cli_simulators import add_simulator_commands, run_simulator
from mesh.cli_statements import add_statement_command, run_statement
from mesh.config import DEFAULT_CONFIG, LOCAL, MeshConfigError, forget_running, load_mesh_config, remember_running, running_config
from mesh.distributed import Mesh, serve_settings
from mesh.embedded import ALL_MODULES, CONTEXT_NAMES, module_named, start_process
from mesh.kubernetes import Target
from mesh.local_servers import LocalServerError
from mesh.status import front_door_status, mesh_status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ogpgy",
        description="OgPgy Bank mesh: a core bank as gRPC bounded contexts.",
        epilog="Run 'ogpgy up' and explore with grpcurl; see README.md for a walk-through.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json: one JSON object per line, with request id and trace id (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (0 picks a free port)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_up_command(commands)
    _serve_command(commands)
    _graph_command(commands)
    _config_command(commands)
    _deploy_command(commands)
    _status_command(commands)
    add_simulator_commands(commands)
    add_operator_commands(commands)
    add_statement_command(commands)
    add_cob_command(commands)
    add_payments_command(commands)
    add_sagas_commands(commands)
    add_dead_letters_command(commands)
    return parser


def _serve_command(commands: Subcommands) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve one process of a distributed mesh (a context, or the contexts the configuration groups)",
        description="Serve one process kind of the mesh configuration; its contexts call each other in-process, "
        "every other context at its configured address(es).",
    )
    serve.add_argument("process", help="process name in the mesh configuration (by default, one per context)")
    serve.add_argument(
        "--replica", type=int, default=0, help="which of the process's addresses to listen on (default: %(default)s)"
    )
    serve.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="(default: %(default)s)")


def _config_command(commands: Subcommands) -> None:
    config = commands.add_parser(
        "config",
        help="the effective settings of a process, secrets redacted",
        description="Prints every setting as a process would start with it: what the mesh configuration "
        "gives (with --process), else OGPGY_* environment variables, files in OGPGY_SECRETS_DIR, then the "
        "defaults. Passwords are shown as ***.",
    )
    config.add_argument("--process", default="", help="a process of the mesh configuration (default: embedded `up`)")
    config.add_argument("--replica", type=int, default=0, help="(default: %(default)s)")
    config.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="(default: %(default)s)")


def _deploy_command(commands: Subcommands) -> None:
    deploy = commands.add_parser("deploy", help="render deployments of the mesh configuration").add_subparsers(
        dest="target", required=True
    )
    kubernetes = deploy.add_parser(
        "kubernetes",
        help="Kubernetes manifests (kustomize): a Deployment, headless Service, PodDisruptionBudget and "
        "NetworkPolicy per process of the mesh configuration",
        description="Renders a kustomization from the mesh configuration: its processes and replicas; the "
        "NetworkPolicies follow the contexts' imports. Apply with `kubectl apply -k DIR/overlays/dev` (or prod) once "
        "the overlay's secrets/ holds the files the README lists.",
    )
    kubernetes.add_argument("--output", type=Path, required=True, help="directory to write the kustomization into")
    kubernetes.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="(default: %(default)s)")
    kubernetes.add_argument("--namespace", default=Target.namespace, help="(default: %(default)s)")
    kubernetes.add_argument("--image", default=Target.image, help="the bank's image (default: %(default)s)")
    kubernetes.add_argument("--cluster-domain", default=Target.cluster_domain, help="(default: %(default)s)")
    kubernetes.add_argument(
        "--payment-network",
        default=Target.payment_network,
        help="the payment network's gRPC target in prod (dev runs the simulator) (default: %(default)s)",
    )
    kubernetes.add_argument(
        "--front-door-host", default=Target.front_door_host, help="the name callers reach the bank by (default: %(default)s)"
    )
    kubernetes.add_argument(
        "--front-door-image", default=Target.front_door_image, help="an unprivileged nginx image (default: %(default)s)"
    )
    kubernetes.add_argument(
        "--proxied-from",
        default="",
        metavar="CIDR",
        help="the Gateway's proxies send the PROXY protocol from there: the door then sees each caller's own address",
    )
    kubernetes.add_argument(
        "--gateway-class",
        default=Target.gateway_class,
        help="the GatewayClass whose Gateway passes TLS through to the front door (default: %(default)s)",
    )


def _graph_command(commands: Subcommands) -> None:
    graph = commands.add_parser(
        "graph",
        help="the context map drawn from the DI declarations: Mermaid, DOT or SVG",
        description="Contexts and their exported services; solid arrows are calls through imported stubs, "
        "dotted arrows are events from publisher to consumer.",
    )
    graph.add_argument("--format", choices=["mermaid", "dot", "svg"], default="mermaid", help="(default: %(default)s)")
    graph.add_argument("--output", type=Path, default=None, help="write to this file (default: standard output)")


def _status_command(commands: Subcommands) -> None:
    status = commands.add_parser("status", help="every context of a mesh: its addresses and health")
    status.add_argument(
        "--config",
        type=Path,
        default=None,
        help="(default: $OGPGY_MESH_CONFIG, else the mesh a running `up --distributed` serves, else mesh.toml)",
    )


def _deploy(args: argparse.Namespace) -> int:
    config = load_mesh_config(args.config, known_contexts=CONTEXT_NAMES)
    target = Target(
        args.namespace,
        args.image,
        args.cluster_domain,
        args.payment_network,
        front_door_image=args.front_door_image,
        front_door_host=args.front_door_host,
        gateway_class=args.gateway_class,
        proxied_from=args.proxied_from,
    )
    written = kubernetes.write(kubernetes.render(config, target, ALL_MODULES), args.output)
    print(f"wrote {len(written)} files to {args.output}: base/ and overlays/dev, overlays/prod; put each overlay's secrets")
    print(f"in its secrets/ (see the README), then  kubectl apply -k {args.output / 'overlays' / 'dev'}  (or prod)")
    return 0


LOCAL_SHOWN = "(started by ogpgy up --distributed: its address is given to the process then)"


def _config(args: argparse.Namespace) -> int:
    if args.process:
        mesh = load_mesh_config(args.config, known_contexts=CONTEXT_NAMES)

        # What `up --distributed` starts itself has no address before it runs: shown as such,
        # not refused as `serve` refuses a process that would have nothing to reach.
        def shown_as(value: str) -> str:
            return LOCAL_SHOWN if value == LOCAL else value

        shown = dataclasses.replace(mesh, redis=shown_as(mesh.redis), postgres=shown_as(mesh.postgres), smtp=shown_as(mesh.smtp))
        settings = serve_settings(shown, args.process, args.replica, os.environ.get("OGPGY_ADMIN_PASSWORD", ""))
    else:
        settings = Settings()
    for name, value in settings.redacted().items():
        print(f"{name} = {json.dumps(value)}")
    return 0


async def _serve(args: argparse.Namespace) -> int:
    config = load_mesh_config(args.config, known_contexts=CONTEXT_NAMES)
    spec = config.process(args.process)
    settings = serve_settings(config, args.process, args.replica, os.environ.get("OGPGY_ADMIN_PASSWORD", ""))
    if spec.metrics:
        host, port = spec.metrics[args.replica].rsplit(":", 1)
        serve_metrics(int(port), host)
    elif spec.metrics_port:
        serve_metrics(spec.metrics_port, spec.listen.rsplit(":", 1)[0].strip("[]"))
    stop = stop_signal()
    node = await start_process(settings, [module_named(c) for c in spec.contexts])
    print(f"{args.process}[{args.replica}] serving {', '.join(node.server.service_names)} on {node.target}", flush=True)
    received = await stop
    logging.getLogger("ogpgy.mesh").info("%s received: shutting down", received.name)
    await node.stop()
    return 0


def _up_distributed(args: argparse.Namespace) -> int:
    config = load_mesh_config(args.config, known_contexts=CONTEXT_NAMES)
    mesh = Mesh(args.config, config, admin_password=Settings().admin_password, log_level=args.log_level)
    received: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: received.append(number))
    mesh.start()
    remember_running(args.config)
    print(
        f"OgPgy Bank mesh is up in {mesh.started_in:.1f} s ({len(mesh.replicas)} processes, logs in {config.data_dir / 'logs'}):"
    )
    for replica in mesh.replicas:
        contexts = ", ".join(config.process(replica.process).contexts)
        print(f"  {replica.process}[{replica.index}]  {replica.address:<22} pid {replica.proc.pid:<8} {contexts}")
    pki = config.data_dir / "pki"
    tls = f"--cacert {pki / 'ca.pem'} --cert {pki / 'clients' / 'operator.pem'}" if config.mutual_tls else ""
    print(f"Token: scripts/ogpgy token --target {config.target('identity')} --data-dir {config.data_dir} {tls}")
    if mesh.front_door is not None:
        door = config.front_door
        print(f"Front door: {door}  (gRPC, Connect and gRPC-Web for every public service; TLS with {pki / 'ca.pem'})")
        print(f"  export OGPGY_TARGET={door} OGPGY_CA_FILE={pki / 'ca.pem'} OGPGY_DATA_DIR={config.data_dir}")
    print("Status: scripts/ogpgy status; stop with Ctrl-C.", flush=True)
    renewing = threading.Event()
    if config.mutual_tls:
        mesh.keep_certificates_fresh(renewing)
    mesh.supervise()  # a replica that dies is started again (`ogpgy status` counts the restarts)
    while not received:
        signal.pause()
    renewing.set()
    print("stopping the mesh...", file=sys.stderr, flush=True)
    forget_running()
    mesh.stop()
    return 0


def _graph(args: argparse.Namespace) -> int:
    from mesh import graph

    drawn = {"mermaid": graph.mermaid, "dot": graph.dot, "svg": graph.svg}[args.format](ALL_MODULES)
    if args.output is None:
        print(drawn, end="")
    else:
        args.output.write_text(drawn, encoding="utf-8")
    return 0


def _status(args: argparse.Namespace) -> int:
    config = load_mesh_config(args.config or running_config(), known_contexts=CONTEXT_NAMES)
    rows = mesh_status(config)
    print(
        f"{'process':<15} {'address':<21} {'health':<8} {'restarts':<8} {'contexts':<22} {'breakers':<28} {'outbox lag':<20}"
        " consumer lag"
    )
    for row in rows:
        print(
            f"{row.process:<15} {row.address:<21} {row.health:<8} {row.restarts:<8} {', '.join(row.contexts):<22} "
            f"{row.breakers or '-':<28} {row.outbox_lag or '-':<20} {row.consumer_lag or '-'}"
        )
    door = front_door_status(config)
    if door is not None:
        print(f"front door      {config.front_door:<21} {door}")
    return 0 if all(row.health == "SERVING" for row in rows) and door in (None, "SERVING") else 1


def _setup_logging(level: str, form: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if form == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if form == "text":  # a line per call is for JSON logs, which machines read; people read the rest
        logging.getLogger(RPC_LOGGER).setLevel(logging.WARNING)
        logging.getLogger("ogpgy.events.consumed").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level, args.log_format)
    if args.metrics_port is not None:
        port = serve_metrics(args.metrics_port)
        logging.getLogger("ogpgy.mesh").info("metrics on http://127.0.0.1:%d/metrics", port)
    try:
        if args.command == "up":
            return _up_distributed(args) if args.distributed else asyncio.run(up_embedded(args))
        if args.command == "serve":
            return asyncio.run(_serve(args))
        if args.command == "status":
            return _status(args)
        if args.command == "graph":
            return _graph(args)
        if args.command == "config":
            return _config(args)
        if args.command == "deploy":
            return _deploy(args)
    except (OSError, MeshConfigError, LocalServerError, RuntimeError) as exc:
        print(f"ogpgy: cannot start: {exc}", file=sys.stderr)
        return 1
    for run in (run_simulator, run_sagas, run_operator, run_statement, run_cob, run_payments, run_dead_letters):
        if (status := run(args)) is not None:
            return status
    return 2


if __name__ == "__main__":
    sys.exit(main())
