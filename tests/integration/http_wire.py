"""The HTTP port spoken to on the wire: a bank process (`ogpgy up`) whose HTTP address and memory
a test can read, raw requests over sockets, and the outcome of an answer in each protocol
(Connect unary, Connect streams, gRPC-Web)."""

from __future__ import annotations

import http.client
import io
import itertools
import json
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.processes import BankProcess

GRPC_CODES = {
    0: "ok",
    1: "canceled",
    2: "unknown",
    3: "invalid_argument",
    4: "deadline_exceeded",
    5: "not_found",
    6: "already_exists",
    7: "permission_denied",
    8: "resource_exhausted",
    9: "failed_precondition",
    10: "aborted",
    11: "out_of_range",
    12: "unimplemented",
    13: "internal",
    14: "unavailable",
    15: "data_loss",
    16: "unauthenticated",
}
NEVER = {"unknown", "internal", "data_loss"}  # a bug's codes: never the answer to what a caller sent
# what a parser's own words look like (json, protobuf, gzip, connectrpc): a message never carries them
PARSER_WORDS = re.compile(
    r"line \d|column \d|char \d|Expecting|Failed to|Traceback|[A-Z]\w+Error|Exception|protocol error|"
    r"Error -?\d|incorrect header|invalid (start|continuation) byte|codec|0x[0-9a-f]{2}|Message type|Available Fields",
)


class HttpBank:
    """`ogpgy up` with its HTTP port; what it prints is drained (a full pipe would stall it)."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.process = BankProcess(data_dir)
        self.process.env.update(env)
        self.port = 0

    def start(self) -> HttpBank:
        process = self.process.start()
        assert process.proc is not None and process.proc.stdout is not None
        for _ in range(40):
            line = process.proc.stdout.readline()
            process.output.append(line)
            found = re.search(r"on http://127\.0\.0\.1:(\d+):", line)
            if found:
                self.port = int(found.group(1))
                break
        assert self.port, f"up names its HTTP address: {process.log[-2000:]}"
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.process.proc is not None and self.process.proc.stdout is not None
        for line in self.process.proc.stdout:
            self.process.output.append(line)

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def stop(self) -> None:
        self.process.stop()

    def memory(self, field: str) -> int:
        """A /proc/<pid>/status figure (VmRSS, VmHWM), in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} for {self.pid}")

    def peak_growth(self, action: Callable[[], object]) -> int:
        """How far above its resident size the bank's peak went while `action` ran, in bytes: the
        kernel's high-water mark (VmHWM), reset to the resident size first (clear_refs 5)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        before = self.memory("VmRSS")
        action()
        time.sleep(0.2)  # what the bank was still doing with it
        return self.memory("VmHWM") - before


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def connect_error(self) -> tuple[str, str]:
        """A Connect unary error's code and message."""
        error = json.loads(self.body)
        return error["code"], error.get("message", "")

    def stream_end(self) -> tuple[str, str]:
        """The code and message a stream ended with: gRPC-Web's trailers frame or Connect's
        end-of-stream message (each the last envelope of the body)."""
        frames = list(envelopes(self.body))
        assert frames, f"no envelope in {self.body[:200]!r}"
        flags, last = frames[-1]
        if self.headers.get("content-type", "").startswith("application/grpc-web"):
            assert flags & 0x80, "gRPC-Web ends with a trailers frame"
            trailers = dict(line.split(":", 1) for line in last.decode().split("\r\n") if ":" in line)
            status = int(trailers["grpc-status"].strip())
            return GRPC_CODES[status], urllib.parse.unquote(trailers.get("grpc-message", "").strip())
        assert flags & 0x02, "a Connect stream ends with its end-of-stream message"
        error = json.loads(last).get("error")
        return (error["code"], error.get("message", "")) if error else ("ok", "")

    def outcome(self) -> tuple[str, str]:
        """The code and message whatever the protocol (a plain HTTP refusal: its status)."""
        content_type = self.headers.get("content-type", "")
        if self.status == 200 and content_type.startswith(("application/grpc-web", "application/connect+")):
            return self.stream_end()
        if content_type.startswith("application/json") and self.body:
            return self.connect_error()
        return f"http {self.status}", self.body.decode(errors="replace")


def envelopes(body: bytes) -> Iterable[tuple[int, bytes]]:
    at = 0
    while at + 5 <= len(body):
        flags, size = struct.unpack(">BI", body[at : at + 5])
        yield flags, body[at + 5 : at + 5 + size]
        at += 5 + size


def envelope(message: bytes, flags: int = 0, declared: int | None = None) -> bytes:
    return struct.pack(">BI", flags, len(message) if declared is None else declared) + message


class _Replay(io.BytesIO):
    def makefile(self, *_args: object, **_kwargs: object) -> _Replay:
        return self


def parse_answer(raw: bytes) -> Answer:
    """An HTTP/1.1 answer read off a socket (chunked or not)."""
    response = http.client.HTTPResponse(_Replay(raw))  # type: ignore[arg-type]  # reads it as from a socket
    response.begin()
    body = response.read()
    return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def connect(port: int, source: str = "127.0.0.1", timeout: float = 30) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_all(sock: socket.socket) -> tuple[bytes, bool]:
    """What the server sent until it closed (True) or the socket's timeout ran out (False)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received, False
    except ConnectionResetError:
        pass
    return received, True


def head(path: str, content_type: str, length: int | None = None, **extra: str) -> bytes:
    """A POST's request line and headers; Content-Length when `length` is given, else chunked."""
    lines = [f"POST {path} HTTP/1.1", "host: bank", f"content-type: {content_type}"]
    lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def post(port: int, path: str, body: bytes, content_type: str, **extra: str) -> Answer:
    """One request on its own connection; the answer (the connection closed after it)."""
    sock = connect(port)
    try:
        sock.sendall(head(path, content_type, len(body), connection="close", **extra) + body)
        raw, closed = read_all(sock)
    finally:
        sock.close()
    assert closed, f"no end to the answer: {raw[:300]!r}"
    return parse_answer(raw)


def stream_until_refused(port: int, first: bytes, rest: Iterable[bytes]) -> tuple[Answer | None, int]:
    """Sends `first` then each of `rest` while the bank reads, the answer read alongside; the
    answer (None if the connection was reset before one came) and how many bytes were sent."""
    sock = connect(port)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(read_all(sock)[0]), daemon=True)
    reader.start()
    sent = 0
    try:
        for data in itertools.chain([first], rest):
            if got:
                break
            sock.sendall(data)
            sent += len(data)
    except OSError:
        pass  # the bank closed the connection: the refusal
    reader.join(60)
    sock.close()
    raw = got[0] if got else b""
    return (parse_answer(raw) if raw.startswith(b"HTTP/1.1") else None), sent
