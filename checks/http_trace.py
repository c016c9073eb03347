"""What the wire said about one HTTP request: httpcore's trace events as curl-like timing
phases, the first bytes of the answer, the address it left from, and an exception named as
an error kind and the phase it happened in (checks.attempt)."""

from __future__ import annotations

import errno
import ssl
import time
from typing import Any

import httpx

from badgateway.checks.attempt import AttemptError, ErrorKind, ErrorPhase

_FIRST_BYTES = 64  # of an answer that is not HTTP, quoted as evidence


class Timer:
    """Collects httpcore trace events into curl-like cumulative phases (ms since start)."""

    def __init__(self, tls: bool = False) -> None:
        self.start = time.monotonic()
        self.marks: dict[str, float] = {}
        self.source: str | None = None
        self.first_bytes = bytearray()  # the start of the answer, as it came off the wire
        # The stream that carries HTTP: the TLS one over https, never the handshake's bytes.
        self._http_stream_ready = (
            "connection.start_tls.complete" if tls else "connection.connect_tcp.complete"
        )

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        self.marks.setdefault(event, time.monotonic())
        if event == "connection.connect_tcp.complete" and self.source is None:
            self.source = _local_address(info.get("return_value"))
        if event == self._http_stream_ready:
            self._record_reads(info.get("return_value"))

    def _record_reads(self, stream: Any) -> None:
        """Keep the first bytes read from ``stream``. h11 waits for a blank line before it
        judges a status line, so an answer like an SSH banner ("SSH-2.0-…\r\n", then
        silence) would otherwise look like no answer at all."""
        read = getattr(stream, "read", None)
        if read is None:
            return
        first = self.first_bytes

        # httpcore's own read signature, timeout included.
        async def recording_read(max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
            data: bytes = await read(max_bytes, timeout)
            if len(first) < _FIRST_BYTES:
                first.extend(data[: _FIRST_BYTES - len(first)])
            return data

        stream.read = recording_read

    def ms(self, event: str) -> float | None:
        at = self.marks.get(event)
        return None if at is None else round((at - self.start) * 1000, 1)

    def seen(self, event: str) -> bool:
        return event in self.marks

    def phases(self, tls: bool) -> dict[str, float]:
        out: dict[str, float] = {"dns": 0.0}  # pinned: no lookup on the request's path
        connect = self.ms("connection.connect_tcp.complete")
        if connect is not None:
            out["connect"] = connect
        if tls:
            handshake = self.ms("connection.start_tls.complete")
            if handshake is not None:
                out["tls"] = handshake
        ttfb = self.ms("http11.receive_response_headers.complete") or self.ms(
            "http2.receive_response_headers.complete"
        )
        if ttfb is not None:
            out["ttfb"] = ttfb
        out["total"] = round((time.monotonic() - self.start) * 1000, 1)
        return out


def _local_address(stream: Any) -> str | None:
    """The "ip:port" a connected httpcore stream left from."""
    try:
        name = stream.get_extra_info("socket").getsockname()
    except (AttributeError, OSError):
        return None
    host, port = str(name[0]), int(name[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _root_cause(exc: BaseException) -> BaseException:
    seen: set[int] = set()
    current: BaseException = exc
    while id(current) not in seen:
        seen.add(id(current))
        nxt = current.__cause__ or current.__context__
        if nxt is None:
            break
        current = nxt
    return current


def classify_error(exc: BaseException, timer: Timer, tls: bool) -> AttemptError:
    """Name what went wrong: kind (refused, timeout, reset, tls, closed, unreachable,
    protocol, other) and phase (connect, tls, response, body)."""
    connected = timer.seen("connection.connect_tcp.complete")
    handshaken = not tls or timer.seen("connection.start_tls.complete")
    got_headers = timer.seen("http11.receive_response_headers.complete") or timer.seen(
        "http2.receive_response_headers.complete"
    )
    if not connected:
        phase = ErrorPhase.CONNECT
    elif not handshaken:
        phase = ErrorPhase.TLS
    elif not got_headers:
        phase = ErrorPhase.RESPONSE
    else:
        phase = ErrorPhase.BODY
    root = _root_cause(exc)
    message = str(root) or str(exc) or type(exc).__name__
    kind = ErrorKind.OTHER
    if isinstance(exc, httpx.TimeoutException) or isinstance(root, TimeoutError):
        kind = ErrorKind.TIMEOUT
    elif isinstance(root, ssl.SSLCertVerificationError):
        kind = ErrorKind.TLS
        message = f"certificate verify failed: {root.verify_message or message}"
    elif isinstance(root, ssl.SSLError) or phase is ErrorPhase.TLS:
        kind = ErrorKind.TLS
    elif isinstance(root, ConnectionRefusedError):
        kind = ErrorKind.REFUSED
    elif isinstance(root, ConnectionResetError):
        kind = ErrorKind.RESET
    elif isinstance(root, OSError) and root.errno in (
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
    ):
        kind = ErrorKind.UNREACHABLE
    elif isinstance(exc, httpx.RemoteProtocolError):
        # h11 says "Server disconnected without sending a response" for a silent close.
        kind = ErrorKind.CLOSED if "disconnected" in message.lower() else ErrorKind.PROTOCOL
    elif isinstance(exc, httpx.ReadError | httpx.WriteError):
        kind = ErrorKind.CLOSED
    return {"kind": kind, "phase": phase, "message": message[:300]}


def may_be_http(head: bytes) -> bool:
    """Whether ``head`` starts (or may still start) like an HTTP/1 answer (the probe does
    not offer HTTP/2)."""
    return head.startswith(b"HTTP/") or b"HTTP/".startswith(head)
