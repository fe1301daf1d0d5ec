"""`ogpgy dead-letters list|replay|drop`: the events a consumer gave up on, as
og.operations.v1.DeadLetterService answers them, called as one of the bank's admins."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mesh.cli_operator import Subcommands, _as_client, _client_arguments, _invocation, _issue_token, _tls

_FILTER_HELP = (
    "AIP-160: comparisons joined by AND over event_type (or topic), consumer, state (WAITING, REPLAYED, "
    "DROPPED) and dead_time, e.g. 'consumer = \"account\" AND state = WAITING'"
)
_EPILOG = """\
A dead letter is an event a consumer (context) gave up on after its retries. Replay it once the
cause is fixed (the event goes to that consumer alone; an event it handled already changes
nothing), or drop it when it needs no delivery. Both need a reason, kept with the letter and in the
audit trail. Every command calls a running bank as an admin (--username, OGPGY_PASSWORD or the
first admin's password file under --data-dir).
"""


def add_dead_letters_command(commands: Subcommands) -> None:
    letters = commands.add_parser(
        "dead-letters",
        help="events a consumer gave up on: list, replay or drop them (admins)",
        description=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).add_subparsers(dest="action", required=True)
    listing = letters.add_parser("list", help="the dead letters, oldest first", description=_EPILOG)
    listing.add_argument("--filter", default="state = WAITING", help=f"{_FILTER_HELP} (default: %(default)s; '' for all)")
    listing.add_argument("--page-size", type=int, default=50, help="letters per page (default: %(default)s)")
    listing.add_argument("--all", action="store_true", help="every page, not only the first")
    listing.add_argument("--page-token", default="", help="the next page, as the previous list printed it")
    _client_arguments(listing)
    for action, words in (("replay", "re-deliver it to the consumer that gave up on it"), ("drop", "close it undelivered")):
        parser = letters.add_parser(action, help=f"{words} (a WAITING letter)", description=_EPILOG)
        parser.add_argument("dead_letter_id", metavar="ID", help="the letter's id (dlq_...)")
        parser.add_argument("--reason", required=True, help="why: kept with the letter and in the audit trail")
        parser.add_argument(
            "--request-id", default=None, help="to send a request again after a lost answer (default: a new one, printed)"
        )
        _client_arguments(parser)


def _line(letter: Any, pb: Any) -> str:
    state = pb.DeadLetterState.Name(letter.state).removeprefix("DEAD_LETTER_STATE_")
    when = letter.dead_time.ToDatetime().isoformat(timespec="seconds")
    done = f"  {letter.actor}: {letter.reason}" if letter.actor else ""
    return f"{letter.dead_letter_id}  {state:<8}  {when}Z  {letter.consumer:<12}  {letter.event_type}  {letter.event_id}{done}"


async def _list(args: argparse.Namespace) -> int:
    from common.grpc.client import bearer_channel
    from og.operations.v1 import dead_letters_pb2 as pb
    from og.operations.v1 import dead_letters_pb2_grpc as pb_grpc

    token, shown = args.page_token, 0
    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        stub = pb_grpc.DeadLetterServiceStub(channel)
        while True:
            request = pb.ListDeadLettersRequest(filter=args.filter, page_size=args.page_size, page_token=token)
            page = await stub.ListDeadLetters(request)
            for letter in page.dead_letters:
                print(_line(letter, pb))
                print(f"    error: {letter.error}")
            shown += len(page.dead_letters)
            token = page.next_page_token
            if not token or not args.all:
                break
    if token:
        print(f"more: --page-token {token}", file=sys.stderr)
    print(f"{shown} dead letter{'' if shown == 1 else 's'}", file=sys.stderr)
    return 0


async def _act(args: argparse.Namespace) -> int:
    from common.grpc.client import bearer_channel
    from og.operations.v1 import dead_letters_pb2 as pb
    from og.operations.v1 import dead_letters_pb2_grpc as pb_grpc

    request_id = args.request_id or _invocation(f"cli-{args.action}")
    print(f"request_id {request_id}", file=sys.stderr)
    async with bearer_channel(args.target, await _issue_token(args), _tls(args)) as channel:
        stub = pb_grpc.DeadLetterServiceStub(channel)
        if args.action == "replay":
            replay = pb.ReplayDeadLetterRequest(request_id=request_id, dead_letter_id=args.dead_letter_id, reason=args.reason)
            letter = (await stub.ReplayDeadLetter(replay)).dead_letter
        else:
            drop = pb.DropDeadLetterRequest(request_id=request_id, dead_letter_id=args.dead_letter_id, reason=args.reason)
            letter = (await stub.DropDeadLetter(drop)).dead_letter
    print(_line(letter, pb))
    return 0


def run_dead_letters(args: argparse.Namespace) -> int | None:
    """The exit status of `ogpgy dead-letters ...`; None when `args` names another command."""
    if args.command != "dead-letters":
        return None
    if args.action == "list":
        return _as_client(_list(args), "cannot list dead letters")
    return _as_client(_act(args), f"{args.action} refused")
