"""HAProxy logs (as syslog stores them, or ``format raw``): the per-request HTTP/TCP log
line and HAProxy's own server-state alerts.

A request line carries a termination state (``SC--``, ``sH--``…): the first letter says who
ended the session (S = the server, s = a server-side timeout, P = the proxy itself), the
second at which stage (C = connect, H = response headers, D = data, Q = queue). Those two
letters are the cause, as the HAProxy manual's "Session state at disconnection" lists.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from badgateway.checks.http_status import server_failed
from badgateway.checks.logparse import LogLine, first_match, local_time, rule
from badgateway.checks.model import Cause

_HTTP = re.compile(
    r"(?:^|\s)(?P<client>\S+:\d+) \[(?P<ts>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2})(?:\.\d+)?\] "
    r"(?P<frontend>\S+) (?P<backend>[^\s/]+)/(?P<server>\S+) "
    r"(?:-?\d+/){3,4}\+?-?\d+ (?P<status>-?\d+) \+?\d+ \S+ \S+ (?P<term>[A-Za-z-]{4}) "
)
_TCP = re.compile(
    r"(?:^|\s)(?P<client>\S+:\d+) \[(?P<ts>\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2})(?:\.\d+)?\] "
    r"(?P<frontend>\S+) (?P<backend>[^\s/]+)/(?P<server>\S+) "
    r"-?\d+/-?\d+/\+?-?\d+ \+?\d+ (?P<term>[A-Za-z-]{2}) "
)
# "<134>Nov 22 04:48:03 host haproxy[12]: msg" (rfc3164, as rsyslog stores it) or
# "2024-05-01T12:00:00.123+00:00 host haproxy[12]: msg" (rsyslog's high-precision format)
_SYSLOG = re.compile(
    r"^(?:<\d+>)?(?:(?P<bsd>\w{3} [ \d]\d \d{2}:\d{2}:\d{2})|(?P<iso>\d{4}-\d{2}-\d{2}T\S+))"
    r" \S+ haproxy\[\d+\]: (?P<msg>.*)$"
)
_ALERT = re.compile(r"^\[(?P<level>ALERT|WARNING|NOTICE)\]\s+\(\d+\) : (?P<msg>.*)$")

_STATES: dict[str, tuple[Cause, str]] = {
    "SC": (Cause.UPSTREAM_REFUSED, "server refused the connection (SC)"),
    "sC": (Cause.UPSTREAM_TIMEOUT, "connect to server timed out (sC)"),
    "sH": (Cause.UPSTREAM_TIMEOUT, "server response timed out (sH)"),
    "sD": (Cause.UPSTREAM_TIMEOUT, "server timed out during data (sD)"),
    "SH": (Cause.UPSTREAM_CLOSED, "server closed before complete headers (SH)"),
    "SD": (Cause.UPSTREAM_CLOSED, "server aborted during data (SD)"),
    "PH": (Cause.UPSTREAM_INVALID, "invalid or too big response headers from server (PH)"),
    "sQ": (Cause.OVERLOAD, "timed out in the queue: servers at maxconn (sQ)"),
}

RULES = (
    rule(
        r"is DOWN, reason: Layer4 connection problem.*Connection refused",
        Cause.UPSTREAM_REFUSED,
        "health check: connection refused",
    ),
    rule(r"is DOWN, reason: Layer4 timeout", Cause.UPSTREAM_TIMEOUT, "health check: timeout"),
    rule(r"has no server available", None, "no server available", secondary=True),
)
_SERVER_NAMED = re.compile(r"Server (?P<u>\S+/\S+) is DOWN")


def detect(line: str) -> bool:
    return bool(_HTTP.search(line) or _TCP.search(line) or _SYSLOG.match(line))


def _syslog_time(m: re.Match[str]) -> datetime | None:
    if m["iso"]:
        try:
            return datetime.fromisoformat(m["iso"]).astimezone()
        except ValueError:
            return None
    now = datetime.now().astimezone()
    when = local_time(f"{now.year} {m['bsd']}", "%Y %b %d %H:%M:%S")
    if when is not None and when > now + timedelta(days=1):
        when = when.replace(year=now.year - 1)  # a December line read in January
    return when


def _request(m: re.Match[str], status: int | None) -> LogLine:
    term = m["term"]
    server = m["server"]
    known = _STATES.get(term[:2])
    if known is not None and server == "<NOSRV>" and term[:2] == "SC":
        known = None  # no server was even tried: every server is down (see the DOWN alerts)
    upstream = f"{m['backend']}/{server}" if server != "<NOSRV>" else m["backend"]
    return LogLine(
        when=local_time(m["ts"], "%d/%b/%Y:%H:%M:%S"),
        is_error=(status is not None and server_failed(status)) or term[0] in "SsPRI",
        cause=known[0] if known else None,
        what=known[1] if known else None,
        upstream=upstream,
        secondary=server == "<NOSRV>" and term[:2] == "SC",
        # "fe_web~" is a frontend that terminated TLS; its name is the same.
        server=m["frontend"].rstrip("~"),
        backend=m["backend"],
        client=m["client"],
        status=status,
    )


def classify(line: str) -> LogLine | None:
    m = _HTTP.search(line)
    if m is not None:
        return _request(m, int(m["status"]))
    m = _TCP.search(line)
    if m is not None:
        return _request(m, None)
    syslog = _SYSLOG.match(line)
    alert = _ALERT.match(line)
    if syslog is None and alert is None:
        return None
    msg = syslog["msg"] if syslog else alert["msg"] if alert else ""
    found = first_match(RULES, msg)
    named = _SERVER_NAMED.search(msg)
    return LogLine(
        when=_syslog_time(syslog) if syslog else None,
        is_error=found is not None or bool(alert and alert["level"] == "ALERT"),
        cause=found.cause if found else None,
        what=found.what if found else None,
        upstream=named["u"] if named else None,
        secondary=found.secondary if found else False,
        backend=named["u"].split("/", 1)[0] if named else None,
    )
