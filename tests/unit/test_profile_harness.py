"""The profiling harness charges each sampled stack to the layer of its innermost frame that has
one, looking through generic helpers, and leaves idle pool workers out."""

from __future__ import annotations

from scripts.bench.profile_server import parse_raw

RAW = """\
_run_once (asyncio/base_events.py:1922);_run (asyncio/events.py:80);handle (common/grpc/interceptors.py:203);GetCustomer (services/customer/api.py:90);customer_pb (services/customer/api.py:40) 7
_run_once (asyncio/base_events.py:1922);_run (asyncio/events.py:80);verify (common/security/tokens.py:150);wrapper (functools.py:909) 3
_run_once (asyncio/base_events.py:1922);_run (asyncio/events.py:80) 5
_bootstrap (threading.py:1002);run (threading.py:982);_worker (concurrent/futures/thread.py:81) 11
_bootstrap (threading.py:1002);run (threading.py:982);_run_reads (common/db/sqlite.py:90);fetchall (common/db/sqlite.py:60) 2
"""


def test_samples_go_to_the_innermost_layer_and_idle_workers_to_none() -> None:
    layers, functions = parse_raw(RAW)
    assert layers == {
        "messages and serialization": 7,
        "authentication": 3,  # functools is looked through to its caller
        "C code run by loop callbacks (grpc.aio's completion queue)": 5,
        "database (and its thread hops)": 2,
    }
    assert functions["customer_pb (services/customer/api.py)"] == 7
