"""Varnish's shared-memory log (VSL) as text files: why a backend fetch failed.

Varnish has no error log. It writes every transaction to the VSL, where a failed backend
fetch carries a ``FetchError`` record saying why ("backend app: fail errno 111 (Connection
refused)", "first byte timeout", "HTC eof (-1)"...), and the client gets Varnish's own
"503 Backend fetch failed". Two programs turn the VSL into a file badgateway reads:

- ``varnishlog -g request -q 'FetchError or RespStatus >= 500' -A -u -a -w FILE`` writes one
  block per client request with its backend fetch nested in it::

      *   << Request  >> 2
      -   Begin          req 1 rxreq
      -   Timestamp      Start: 1700000000.562254 0.000000 0.000000
      -   ReqStart       127.0.0.1 53412 a0
      -   ReqURL         /x?_bgw=abc.1
      ...
      **  << BeReq    >> 3
      --  FetchError     backend app: fail errno 111 (Connection refused)
      ...

  ``records`` makes each block one record (so a request and its fetch are one record), and
  ``classify`` reads it whole. Other groupings work too: with ``-g vxid`` the fetch is a
  record of its own, and the client's request becomes a consequence of it.
- ``varnishncsa -b -F NCSA_FORMAT -a -w FILE`` writes one line per backend fetch, in the
  format below (varnishncsa's default format has no FetchError).

The FetchError messages are Varnish 7.1's own (bin/varnishd/cache/cache_backend.c,
cache_director.c, cache_fetch.c, http1/cache_http1_fetch.c, http1/cache_http1_vfp.c).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from badgateway.checks.http_status import server_failed
from badgateway.checks.logparse import LogLine, Rule, first_match, parse_stamp, rule
from badgateway.checks.model import Cause

# varnishncsa -F: one key=value line per fetch (varnishncsa -b), free text last and quoted.
# %r is "METHOD http://HOST/PATH?QUERY PROTO", so the request's query (its mark) stays in.
NCSA_FORMAT = (
    "%{%Y-%m-%dT%H:%M:%S%z}t side=%{Varnish:side}x vxid=%{Varnish:vxid}x status=%s "
    "backend=%{VSL:BackendOpen[2]}x upstream=%{VSL:BackendOpen[3]}x:%{VSL:BackendOpen[4]}x "
    'host="%{Host}i" req="%r" bogo_header="%{VSL:BogoHeader}x" fetch_error="%{VSL:FetchError}x"'
)
_NCSA = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}) side=(?P<side>[bc-]) "
    r"vxid=(?P<vxid>\d+|-) status=(?P<status>\d+|-) backend=(?P<backend>\S+) "
    r'upstream=(?P<upstream>\S+) host="(?P<host>[^"]*)" req="(?P<req>.*)" '
    r'bogo_header="(?P<bogo>.*)" fetch_error="(?P<error>.*)"$'
)

# varnishlog's text output (lib/libvarnishapi/vsl.c, VSL_PrintTransactions): a header per
# transaction, "*" per nesting level ("*4*" beyond three), then its records with as many
# "-"; with -v each record also carries its vxid and c/b side.
_HEADER = re.compile(r"^(?P<level>\*{1,3}|\*\d\*)\s+<< (?P<type>\w+)\s*>>\s+(?P<vxid>\d+)\s*$")
_ENTRY = re.compile(
    r"^(?:-  |-- |---|-\d-) "
    r"(?:\s*\d+ (?P<vtag>[A-Z]\w*)\s+[-cb](?: (?P<vdata>.*))?"  # -v: "  12 Tag  c data"
    r"|(?P<tag>[A-Z]\w*)(?: +(?P<data>.*))?)$"
)
_EPOCH = re.compile(r"^\w+: (?P<t>\d+(?:\.\d+)?) ")
# "backend app: fail errno 111 (...)", "Director lb returned no backend" (not "backend closed"
# or "backend write error: ...", which name none).
_BACKEND_NAMED = re.compile(r"^(?:backend (?P<name>[^\s:]+): |Director (?P<director>\S+) returned)")

_FAIL = r"^backend \S+: fail errno "
RULES = (
    rule(_FAIL + r"(?:111|2) ", Cause.UPSTREAM_REFUSED, "connection to the backend refused"),
    rule(_FAIL + r"(?:113|101|112) ", Cause.UPSTREAM_REFUSED, "no route to the backend"),
    rule(_FAIL + r"110 ", Cause.UPSTREAM_TIMEOUT, "connect to the backend timed out"),
    rule(_FAIL + r"(?:13|1) ", Cause.UPSTREAM_PERMISSION, "connect to the backend not permitted"),
    rule(_FAIL + r"11 ", Cause.OVERLOAD, "backend's listen queue full"),
    # During backend_*_error_holddown after a refused/unreachable connect Varnish does not
    # even try, and logs errno 0: the failure that started the hold-down is logged before.
    rule(_FAIL + r"0 ", None, "connect held down after a recent failure", secondary=True),
    rule(r"^backend \S+: busy$", Cause.OVERLOAD, "backend at .max_connections", secondary=True),
    rule(r"^backend \S+: unhealthy$", None, "backend marked sick by its probe", secondary=True),
    rule(
        r"^No backend$|^Director \S+ returned no backend$|^No backend connection",
        None,
        "no healthy backend to fetch from",
        secondary=True,
    ),
    rule(r"^first byte timeout", Cause.UPSTREAM_TIMEOUT, "first byte timeout"),
    # HTC_S_TIMEOUT: part of the headers came, the rest not within between_bytes_timeout.
    rule(r"^timeout$", Cause.UPSTREAM_TIMEOUT, "timed out reading the response headers"),
    # A body read() that hit between_bytes_timeout (SO_RCVTIMEO) fails with EAGAIN.
    rule(
        r"^Resource temporarily unavailable$",
        Cause.UPSTREAM_TIMEOUT,
        "timed out reading the response body",
    ),
    rule(
        r"^HTC eof|^backend closed$",
        Cause.UPSTREAM_CLOSED,
        "backend closed the connection before the response headers",
    ),
    rule(
        r"^(?:straight|chunked) insufficient bytes|^eof socket fail|^chunked read err"
        r"|^Connection reset by peer$",
        Cause.UPSTREAM_CLOSED,
        "backend closed the connection mid-body",
    ),
    rule(
        r"^backend write error",
        Cause.UPSTREAM_CLOSED,
        "backend closed the connection while the request was sent",
    ),
    rule(r"^overflow$", Cause.UPSTREAM_HEADER_TOO_BIG, "response headers over http_resp_size"),
    rule(
        r"^http format error$|^Received junk$|^HTC junk",
        Cause.UPSTREAM_INVALID,
        "invalid response from the backend",
    ),
    rule(
        r"^chunked header|^chunked tail|^bogusly large chunk|^Junk after gzip|^Gunzip error",
        Cause.UPSTREAM_INVALID,
        "invalid response body from the backend",
    ),
)
# "http format error" says only that the response did not parse; the BogoHeader record just
# before it says why, and two of its reasons are a header limit, not a broken backend.
_TOO_BIG = (
    rule(r"^Header too long", Cause.UPSTREAM_HEADER_TOO_BIG, "a response header too long"),
    rule(r"^Too many headers", Cause.UPSTREAM_HEADER_TOO_BIG, "too many response headers"),
)
_FETCH_FAILED = "Backend fetch failed"  # the reason of Varnish's own 503 (vcl_backend_error)


def detect(line: str) -> bool:
    return bool(_ENTRY.match(line) or _HEADER.match(line) or _NCSA.match(line))


def records(lines: Iterable[str]) -> Iterator[str]:
    """varnishlog's blocks as one record each (a top-level transaction with every one
    nested in it, up to the blank line that ends a group); varnishncsa lines one each."""
    block: list[str] = []
    for line in lines:
        header = _HEADER.match(line)
        ncsa = _NCSA.match(line) is not None
        if not line.strip() or ncsa or (header is not None and header["level"] == "*"):
            if block:
                yield "\n".join(block)
            block = []
            if ncsa:
                yield line
                continue
        if line.strip():
            block.append(line)
    if block:
        yield "\n".join(block)


@dataclass
class _Transactions:
    """What classify needs from a varnishlog record, in the order it was logged."""

    when: datetime | None = None
    client: str | None = None
    req_host: str | None = None
    bereq_host: str | None = None
    resp_status: int | None = None
    resp_reason: str | None = None
    fetch_errors: list[str] = field(default_factory=list)
    # The BackendOpen and BogoHeader last logged before each FetchError: a record can hold
    # several fetches (retries, ESI), and each fetch's own records come before its error.
    opens: list[tuple[str, str] | None] = field(default_factory=list)
    bogus: list[str | None] = field(default_factory=list)


def _address(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _header_value(data: str, name: str) -> str | None:
    key, sep, value = data.partition(":")
    return value.strip() if sep and key.strip().lower() == name else None


def _entries(record: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for line in record.splitlines():
        m = _ENTRY.match(line.rstrip())
        if m is not None:
            found.append((m["vtag"] or m["tag"], (m["vdata"] or m["data"] or "").strip()))
    return found


def _read(entries: list[tuple[str, str]]) -> _Transactions:
    seen = _Transactions()
    backend_open: tuple[str, str] | None = None
    bogo: str | None = None
    for tag, data in entries:
        if tag == "Timestamp" and seen.when is None:
            epoch = _EPOCH.match(data)
            if epoch is not None:
                seen.when = datetime.fromtimestamp(float(epoch["t"]), tz=UTC).astimezone()
        elif tag == "ReqStart":
            fields = data.split()
            if len(fields) >= 2:
                seen.client = _address(fields[0], fields[1])
        elif tag == "ReqHeader":
            seen.req_host = _header_value(data, "host") or seen.req_host
        elif tag == "BereqHeader":
            seen.bereq_host = _header_value(data, "host") or seen.bereq_host
        elif tag == "RespStatus" and data.isdigit():
            seen.resp_status = int(data)
        elif tag == "RespReason":
            seen.resp_reason = data
        elif tag == "BackendOpen":
            # "fd name remote-ip remote-port local-ip local-port connect|reuse"
            fields = data.split()
            if len(fields) >= 4:
                backend_open = (fields[1], _address(fields[2], fields[3]))
        elif tag == "BogoHeader":
            bogo = data
        elif tag == "FetchError":
            seen.fetch_errors.append(data)
            seen.opens.append(backend_open)
            seen.bogus.append(bogo)
    return seen


def _rule_for(error: str, bogo: str | None) -> Rule | None:
    found = first_match(RULES, error)
    if error == "http format error" and bogo:
        return first_match(_TOO_BIG, bogo) or found
    return found


def _pick(seen: _Transactions) -> tuple[int, Rule | None] | None:
    """The FetchError that explains the record: the first first-hand one with a cause,
    else the first known one, else the first at all."""
    ruled = [(i, _rule_for(e, seen.bogus[i])) for i, e in enumerate(seen.fetch_errors)]
    first_hand = [(i, r) for i, r in ruled if r and r.cause is not None and not r.secondary]
    known = [(i, r) for i, r in ruled if r is not None]
    for candidates in (first_hand, known, ruled):
        if candidates:
            return candidates[0]
    return None


def _backend_and_upstream(
    error: str, backend_open: tuple[str, str] | None, opens: list[tuple[str, str] | None]
) -> tuple[str | None, str | None]:
    named = _BACKEND_NAMED.match(error)
    if named is not None:
        # A failed connect has no BackendOpen of its own; an earlier fetch to the same
        # backend in this record may still show its address.
        name = named["name"] or named["director"]
        address = next((o[1] for o in opens if o is not None and o[0] == name), None)
        return name, address or name
    if backend_open is not None:
        return backend_open
    return None, None


def _classify_vsl(record: str) -> LogLine | None:
    entries = _entries(record)
    if not entries:
        return None
    seen = _read(entries)
    host = seen.req_host or seen.bereq_host
    host = host.lower() if host else None
    picked = _pick(seen)
    if picked is None:
        # A status line read on its own (a log read line by line) cannot tell Varnish's own
        # 503 from the app's: only a whole transaction (from its Begin) is judged by it.
        whole = any(tag == "Begin" for tag, _ in entries)
        failed = whole and seen.resp_status is not None and server_failed(seen.resp_status)
        # Varnish's own 503 without its fetch in the record (-g vxid logs the fetch as a
        # record of its own, which says why): a consequence, not evidence by itself.
        own = failed and seen.resp_reason == _FETCH_FAILED
        return LogLine(
            when=seen.when,
            is_error=failed,
            what="backend fetch failed (see its fetch record)" if own else None,
            secondary=own,
            host=host,
            client=seen.client,
        )
    index, found = picked
    error = seen.fetch_errors[index]
    backend, upstream = _backend_and_upstream(error, seen.opens[index], seen.opens)
    return LogLine(
        when=seen.when,
        is_error=True,
        cause=found.cause if found else None,
        what=found.what if found else f"FetchError: {error}"[:100],
        upstream=upstream,
        secondary=found.secondary if found else False,
        host=host,
        backend=backend,
        client=seen.client,
    )


def _dash(value: str) -> str | None:
    return None if value in ("", "-") else value


def _classify_ncsa(m: re.Match[str]) -> LogLine:
    stamp = parse_stamp(m["ts"], "%Y-%m-%dT%H:%M:%S%z")
    when = stamp.astimezone() if stamp is not None else None
    error, bogo = _dash(m["error"]), _dash(m["bogo"])
    found = _rule_for(error, bogo) if error else None
    status = int(m["status"]) if m["status"].isdigit() else None
    backend = _dash(m["backend"])
    host_part, _, port = m["upstream"].rpartition(":")
    upstream = _address(host_part, port) if _dash(host_part) and _dash(port) else None
    if error:
        named = _BACKEND_NAMED.match(error)
        backend = backend or (named["name"] or named["director"] if named else None)
    host = _dash(m["host"])
    return LogLine(
        when=when,
        is_error=error is not None or (status is not None and server_failed(status)),
        cause=found.cause if found else None,
        what=(found.what if found else f"FetchError: {error}"[:100]) if error else None,
        upstream=upstream or backend,
        secondary=found.secondary if found else False,
        host=host.lower() if host else None,
        backend=backend,
    )


def classify(record: str) -> LogLine | None:
    ncsa = _NCSA.match(record.strip())
    if ncsa is not None:
        return _classify_ncsa(ncsa)
    return _classify_vsl(record)
