"""`ogpgy up`: every context in one process, and what it prints for a first call."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from common.config import Settings
from common.grpc.server import stop_signal
from common.net import host_port, is_loopback
from mesh.cli_operator import DEFAULT_DATA_DIR, Subcommands
from mesh.config import DEFAULT_CONFIG
from mesh.embedded import RunningBank, start_embedded

_TRY_NEXT = """\
OgPgy Bank is serving {services} on {target} ({data}).

Every call needs a token (the first admin's password is in {password_source}):
  TOKEN=$({token_command})
Try it (grpcurl is installed in .venv/bin by scripts/bootstrap):
  .venv/bin/grpcurl {grpcurl} {target} list
  .venv/bin/grpcurl {grpcurl} {target} describe ogpgy.customer.v1.CustomerService
  .venv/bin/grpcurl {grpcurl} -H "authorization: Bearer $TOKEN" -d '{{"request_id":"demo-1","given_name":"Ada","family_name":"Lovelace",\
"email":"ada@example.com","date_of_birth":{{"year":1990,"month":12,"day":10}},\
"document":{{"type":"DOCUMENT_TYPE_PASSPORT","number":"AB1234564","issuing_country_code":"GB"}},\
"address":{{"lines":["12 St James Sq"],"city":"London","postal_code":"SW1Y 4JH","country_code":"GB"}}}}' \
{target} ogpgy.customer.v1.CustomerService/OnboardCustomer
{http}
Stop with Ctrl-C (graceful: health turns NOT_SERVING, in-flight calls finish).
"""


def add_up_command(commands: Subcommands) -> None:
    up = commands.add_parser(
        "up",
        help="serve every context in one process (embedded mode)",
        description="Serve every context in one process: one gRPC server with health and reflection, "
        "SQLite files in the data directory, no other server needed. Every default below comes from the "
        "OGPGY_* environment (see `ogpgy config`) when it is set there. The first admin's password is "
        "OGPGY_ADMIN_PASSWORD (or a file of that name in OGPGY_SECRETS_DIR), never an argument; by default "
        "it is generated on first start and written to <data-dir>/admin-password.",
    )
    env = Settings()  # the environment's (and secret files') values are the defaults of the flags
    up.add_argument(
        "--host", default=env.host, help="address to listen on; beyond loopback only with --tls (default: %(default)s)"
    )
    up.add_argument(
        "--tls",
        action="store_true",
        default=env.tls,
        help="serve TLS with the bank's own CA (made in <data-dir>/pki on first start; clients trust <data-dir>/pki/ca.pem)",
    )
    up.add_argument("--port", type=int, default=env.port, help="port to listen on; 0 picks a free one (default: %(default)s)")
    up.add_argument(
        "--http-port",
        type=int,
        default=env.http_port,
        help="port of the HTTP access (the Connect protocol with JSON or binary, and gRPC-Web; the public keys at "
        "/.well-known/jwks.json); 0 picks a free one, -1 serves none (default: the gRPC port + 1, a free one with --port 0)",
    )
    up.add_argument("--data-dir", type=Path, default=env.data_dir, help="where the SQLite files live (default: %(default)s)")
    up.add_argument("--postgres-dsn", default=env.postgres_dsn, help="use PostgreSQL (one schema per context) instead of SQLite")
    up.add_argument("--redis-url", default=env.redis_url, help="use Redis Streams for events instead of the in-memory bus")
    up.add_argument(
        "--event-redelivery-ms",
        type=int,
        default=env.event_redelivery_ms,
        help="Redis: redeliver an unacked event after this idle time (default: %(default)s)",
    )
    up.add_argument(
        "--signing-key",
        type=Path,
        default=env.signing_key_path,
        help="Ed25519 PEM that signs tokens (default: <data-dir>/identity-signing-key.pem, made on first start)",
    )
    up.add_argument(
        "--fraud-rules",
        type=Path,
        default=env.fraud_rules_path,
        help="TOML of fraud rules (default: services/payment/fraud.toml)",
    )
    up.add_argument(
        "--velocitypay",
        default="",
        metavar="TARGET",
        help="reach the VelocityPay network at TARGET (default: serve the simulator beside the bank)",
    )
    up.add_argument(
        "--smtp",
        default=env.smtp_url,
        metavar="URL",
        help="send notifications to the mail server at smtp://HOST:PORT (default: serve the mail simulator beside the bank)",
    )
    up.add_argument(
        "--member-key-file",
        type=Path,
        default=env.network_member_key_path,
        help="the bank's key at VelocityPay, read by both ends (default: <data-dir>/velocitypay-member-key, made on first start)",
    )
    up.add_argument(
        "--interest-chunk", type=int, default=env.interest_chunk_size, help="accounts per interest chunk (default: %(default)s)"
    )
    up.add_argument("--no-cache", action="store_true", help="read through to the databases (benchmarks, diagnosis)")
    up.add_argument(
        "--loopback-calls",
        action="store_true",
        help="contexts call each other through the server's socket instead of in-process (benchmarks)",
    )
    up.add_argument(
        "--distributed",
        action="store_true",
        help="one process per context (and replica) of the mesh configuration, with Redis and PostgreSQL",
    )
    up.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="mesh configuration for --distributed (default: %(default)s)"
    )


def _token_hint(target: str, settings: Settings) -> str:
    """The `ogpgy token` that reaches this bank and finds its admin's password."""
    where = f"scripts/ogpgy token --target {target}"
    if settings.tls:
        where += f" --cacert {shlex.quote(str(settings.pki_path() / 'ca.pem'))}"
    if settings.admin_password:
        return f'OGPGY_PASSWORD="$OGPGY_ADMIN_PASSWORD" {where}'  # the operator's own, never printed
    return where if Path(settings.data_dir) == DEFAULT_DATA_DIR else f"{where} --data-dir {shlex.quote(str(settings.data_dir))}"


async def up_embedded(args: argparse.Namespace) -> int:
    if not args.tls and not is_loopback(args.host):
        print(
            f"ogpgy up: refusing to serve plaintext on {args.host}, which other hosts reach (tokens would cross the "
            "network in clear). Add --tls: the bank then serves TLS with its own CA, whose certificate clients "
            f"trust from {args.data_dir / 'pki' / 'ca.pem'} (grpcurl -cacert, ogpgy token --cacert).",
            file=sys.stderr,
        )
        return 2
    settings = Settings(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        database="postgres" if args.postgres_dsn else "sqlite",
        postgres_dsn=args.postgres_dsn,
        redis_url=args.redis_url,
        event_redelivery_ms=args.event_redelivery_ms,
        admin_password=Settings().admin_password,
        cache_enabled=not args.no_cache,
        signing_key_path=args.signing_key,
        fraud_rules_path=args.fraud_rules,
        addresses={"velocitypay": args.velocitypay} if args.velocitypay else {},
        network_member_key_path=args.member_key_file,
        smtp_url=args.smtp,
        interest_chunk_size=args.interest_chunk,
        colocated_calls=not args.loopback_calls,
        tls=args.tls,
        http_port=_http_port(args.http_port, args.port),
    )
    stop = stop_signal()
    bank = await start_embedded(settings)
    print(
        _TRY_NEXT.format(
            services=", ".join(bank.server.service_names),
            target=bank.target,
            data="PostgreSQL" if settings.postgres_dsn else f"data in {settings.data_dir}",
            password_source="OGPGY_ADMIN_PASSWORD" if settings.admin_password else settings.data_dir / "admin-password",
            token_command=_token_hint(bank.target, settings),
            grpcurl=f"-cacert {shlex.quote(str(settings.pki_path() / 'ca.pem'))}" if settings.tls else "-plaintext",
            http=_http_hint(bank, settings),
        ),
        flush=True,
    )
    received = await stop
    logging.getLogger("ogpgy.mesh").info("%s received: shutting down", received.name)
    await bank.stop()
    return 0


def _http_port(asked: int | None, grpc_port: int) -> int | None:
    """The HTTP port `up` serves: the one asked for (-1: none), else the gRPC port's neighbour."""
    if asked is None:
        return grpc_port + 1 if grpc_port else 0
    return None if asked < 0 else asked


_HTTP_HINT = """Or over HTTP, on {url}: the Connect protocol (JSON or binary) and gRPC-Web, same calls, same tokens:
  curl {curl}-H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{{"page_size":5}}' \
{url}/ogpgy.customer.v1.CustomerService/ListCustomers
"""


def _http_hint(bank: RunningBank, settings: Settings) -> str:
    if bank.http is None:
        return ""
    host = bank.target.rsplit(":", 1)[0]
    url = f"{'https' if settings.tls else 'http'}://{host_port(host, bank.http.port)}"
    curl = f"--cacert {shlex.quote(str(settings.pki_path() / 'ca.pem'))} " if settings.tls else ""
    return "\n" + _HTTP_HINT.format(url=url, curl=curl)
