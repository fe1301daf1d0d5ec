"""A mail server for tests and embedded mode: the outside world's SMTP, as the VelocityPay
simulator stands for the payment network. It keeps every message it accepted and misbehaves on
demand: down (connections refused), slow, a share of 4xx answers, 5xx for chosen recipients.

`received` is every message accepted (a retry of one already accepted is there twice);
`mailbox()` folds them by Message-ID, as a mailbox shows them.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from functools import partial
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from common.net import bare_host, host_port


@dataclass
class MailFaults:
    latency: float = 0.0  # seconds before each message is answered
    temporary_failure_rate: float = 0.0  # share of messages answered 451
    refused_recipients: frozenset[str] = frozenset()  # answered 550 at RCPT


@dataclass(frozen=True)
class ReceivedMail:
    message_id: str
    to: tuple[str, ...]
    subject: str
    body: str
    at: datetime


@dataclass
class _Handler:
    faults: MailFaults
    record: Path | None = None  # each accepted message is appended here too, a JSON line (for other processes)
    received: list[ReceivedMail] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def _keep(self, mail: ReceivedMail) -> None:
        self.received.append(mail)
        if self.record is not None:
            line = {"message_id": mail.message_id, "to": list(mail.to), "subject": mail.subject, "at": mail.at.isoformat()}
            with self.record.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")
        self.arrived.set()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        if address in self.faults.refused_recipients:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.faults.latency:
            await asyncio.sleep(self.faults.latency)
        if random.random() < self.faults.temporary_failure_rate:
            return "451 4.3.0 mailbox busy, try again later"
        content: Any = envelope.content
        message = message_from_bytes(content if isinstance(content, bytes) else content.encode(), policy=policy.default)
        body = message.get_body(("plain",))
        self._keep(
            ReceivedMail(
                str(message["Message-ID"] or ""),
                tuple(envelope.rcpt_tos),
                str(message["Subject"] or ""),
                body.get_content().replace("\r\n", "\n") if body is not None else "",
                datetime.now(UTC),
            )
        )
        return "250 2.0.0 accepted"


class MailSimulator:
    """An SMTP server on the running loop (aiosmtpd's protocol, no thread of its own)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, record: Path | None = None) -> None:
        self.host = bare_host(host)  # asyncio binds the bare address
        self.port = port
        self.faults = MailFaults()
        self._handler = _Handler(self.faults, record)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"smtp://{host_port(self.host, self.port)}"

    @property
    def received(self) -> list[ReceivedMail]:
        return self._handler.received

    def mailbox(self) -> dict[str, ReceivedMail]:
        """What a recipient sees: one message per Message-ID (the first accepted)."""
        seen: dict[str, ReceivedMail] = {}
        for mail in self.received:
            seen.setdefault(mail.message_id, mail)
        return seen

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        factory = partial(SMTP, self._handler, hostname="mail.simulator", ident="OgPgy mail simulator")
        self._server = await loop.create_server(factory, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def go_down(self) -> None:
        """Stops listening: connections are refused until `come_back`."""
        await self.stop()

    async def come_back(self) -> None:
        await self.start()

    async def wait_for(self, count: int, within: float) -> bool:
        """Until the mailbox holds `count` messages (True) or `within` seconds pass (False)."""
        try:
            async with asyncio.timeout(within):
                while len(self.mailbox()) < count:
                    self._handler.arrived.clear()
                    await self._handler.arrived.wait()
        except TimeoutError:
            return False
        return True
