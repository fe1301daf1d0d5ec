"""`ogpgy`: the bank's command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from common.config import Settings
from common.grpc.server import stop_signal
from mesh.embedded import start_embedded

DEFAULT_PORT = 50051
DEFAULT_DATA_DIR = Path("var")

_TRY_NEXT = """\
OgPgy Bank is serving {services} on {target} ({data}).

Try it (grpcurl is installed in .venv/bin by scripts/bootstrap):
  .venv/bin/grpcurl -plaintext {target} list
  .venv/bin/grpcurl -plaintext {target} describe ogpgy.customer.v1.CustomerService
  .venv/bin/grpcurl -plaintext -d '{{"request_id":"demo-1","given_name":"Ada","family_name":"Lovelace",\
"email":"ada@example.com","date_of_birth":{{"year":1990,"month":12,"day":10}},\
"document":{{"type":"DOCUMENT_TYPE_PASSPORT","number":"AB1234564","issuing_country_code":"GB"}},\
"address":{{"lines":["12 St James Sq"],"city":"London","postal_code":"SW1Y 4JH","country_code":"GB"}}}}' \
{target} ogpgy.customer.v1.CustomerService/OnboardCustomer

Stop with Ctrl-C (graceful: health turns NOT_SERVING, in-flight calls finish).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ogpgy",
        description="OgPgy Bank mesh: a core bank as gRPC bounded contexts.",
        epilog="Run 'ogpgy up' and explore with grpcurl; see README.md for a walk-through.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser(
        "up",
        help="serve every context in one process (embedded mode)",
        description="Serve every context in one process: one gRPC server with health and reflection, "
        "SQLite files in the data directory, no other server needed.",
    )
    up.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on; 0 picks a free one (default: %(default)s)")
    up.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where the SQLite files live (default: %(default)s)")
    up.add_argument("--postgres-dsn", default="", help="use PostgreSQL (one schema per context) instead of SQLite")
    up.add_argument("--redis-url", default="", help="use Redis Streams for events instead of the in-memory bus")
    up.add_argument("--event-redelivery-ms", type=int, default=5000, help="Redis: redeliver an unacked event after this idle time (default: %(default)s)")
    return parser


async def _up(args: argparse.Namespace) -> int:
    settings = Settings(
        data_dir=args.data_dir,
        host=args.host,
        port=args.port,
        database="postgres" if args.postgres_dsn else "sqlite",
        postgres_dsn=args.postgres_dsn,
        redis_url=args.redis_url,
        event_redelivery_ms=args.event_redelivery_ms,
    )
    stop = stop_signal()
    bank = await start_embedded(settings)
    print(
        _TRY_NEXT.format(
            services=", ".join(bank.server.service_names),
            target=bank.target,
            data="PostgreSQL" if settings.postgres_dsn else f"data in {settings.data_dir}",
        ),
        flush=True,
    )
    received = await stop
    logging.getLogger("ogpgy.mesh").info("%s received: shutting down", received.name)
    await bank.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "up":
        try:
            return asyncio.run(_up(args))
        except OSError as exc:
            print(f"ogpgy: cannot start: {exc}", file=sys.stderr)
            return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
