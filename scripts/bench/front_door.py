"""GetCustomer through the front door (nginx, TLS to the caller, mutual TLS to the customer
process) beside the same call made straight to the customer process, in one distributed mesh.

Usage: .venv/bin/python scripts/bench/front_door.py [--seconds 5] [--rounds 3] [--customers 1000]
One mesh on loopback (mesh/distributed.py with a front door) serves both; the rounds alternate
direct and door so that drift of the machine hits both, and each row is the median round. The
ratio column is the door's QPS over the direct call's at the same number of calls in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[2] / "gen")]

from common.grpc.tls import channel_credentials  # noqa: E402
from mesh.pki import pki_of  # noqa: E402
from scripts.bench.get_customer import _get_customer  # noqa: E402
from scripts.bench.harness import Result, median_rows, print_table  # noqa: E402
from tests.local_mesh import loopback_mesh  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per row (default 5)")
    parser.add_argument("--customers", type=int, default=1000, help="customers onboarded before reading (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; rows show the median (default 3)")
    args = parser.parse_args()
    mesh = loopback_mesh("ogpgy-bench-door-", log_level="WARNING", front_door=True)
    mesh.start()
    direct_rounds: list[list[Result]] = []
    door_rounds: list[list[Result]] = []
    try:
        targets, door = mesh.config.targets(), mesh.config.front_door
        through_door = channel_credentials((pki_of(mesh.config.data_dir) / "ca.pem").read_bytes())
        for _ in range(args.rounds):
            direct = _get_customer(
                targets["customer"], args.seconds, args.customers, "GetCustomer, direct (mTLS)", mesh.tls, targets["identity"]
            )
            direct_rounds.append(asyncio.run(direct))
            door_rounds.append(
                asyncio.run(_get_customer(door, args.seconds, args.customers, "GetCustomer, front door", through_door))
            )
    finally:
        mesh.stop()
    direct_rows = median_rows(direct_rounds)
    print_table(direct_rows + median_rows(door_rounds), {r.in_flight: r for r in direct_rows}, "vs direct")


if __name__ == "__main__":
    main()
