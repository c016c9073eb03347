"""Apache httpd error log lines (mod_proxy, mod_proxy_http, mod_proxy_fcgi):
``[Wed May 01 12:00:00.123456 2024] [proxy:error] [pid 1:tid 2] (111)Connection refused:
AH00957: http: attempt to connect to 10.0.0.5:8080 (10.0.0.5:8080) failed``.

Apache numbers its messages (AHnnnnn); several carry the APR/OS error that says which
failure it was, e.g. AH01102 "error reading status line" with (70007) is a timeout but with
(22) a response that is not HTTP.

Behind mod_proxy_fcgi (php-fpm), as Apache 2.4 writes it:

- AH02454 "FCGI: attempt to connect to Unix domain socket /run/php.sock (localhost:8000)
  failed" with (2) (php-fpm stopped, its socket gone) or (13) (the socket's owner/mode shut
  out Apache's user); AH00957 for a TCP pool. AH01079 "failed to make connection to
  backend" follows either.
- AH01067 "Failed to read FastCGI header": php-fpm closed the connection before answering
  (request_terminate_timeout, a crash); the AH01075 "Error dispatching request to" with
  (104) that follows is its consequence.
- AH01075 with (70007) "(polling)" alone: php-fpm did not answer within Apache's timeout (a
  slow script, or a full pool queueing the request).
- AH01071 "Got error 'PHP message: PHP Fatal error: ...'": what PHP wrote to stderr while
  fastcgi.logging is on; a fatal error is the app failing (the client gets PHP's 500).

Apache's default error log format quotes no request URL, so its lines carry no ``_bgw``
mark; only the client's address ties them to a request. mod_proxy logs a failed connect
(AH00957, AH02454) for the server, without the client; the line its thread writes next for
the request (AH01114, AH01079) names the client, so the two are read as one record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from badgateway.checks.logparse import LogLine, first_match, local_time, rule
from badgateway.checks.logparse.phpfpm import php_error, php_minor_only
from badgateway.checks.model import Cause

_LINE = re.compile(
    r"^\[(?P<ts>\w{3} \w{3} [ \d]\d \d{2}:\d{2}:\d{2})(?:\.\d+)? (?P<year>\d{4})\] "
    r"\[(?:(?P<module>[\w-]+):)?(?P<level>[a-z]+\d?)\] (?P<msg>.*)$"
)
_CLIENT = re.compile(r"\[client (?P<c>[^\]\s]+)\]")
_MAX_HELD = 64  # lines waiting for their thread's next line; more are let go unjoined
_THREAD = re.compile(r"\] \[pid (?P<thread>\d+(?::tid \d+)?)\] ")
_ERRNO = re.compile(r"\((?P<errno>-?\d+)\)[A-Za-z][^:\]]*: ")
_ERROR_LEVELS = frozenset({"error", "crit", "alert", "emerg"})
_TIMEOUT = {"70007", "110"}  # APR_TIMEUP, ETIMEDOUT
_NOT_HTTP = {"22"}  # EINVAL: apr could not parse what the backend sent
_NO_LISTENER = {"111", "2", "113", "101", "112"}  # refused, no socket file, no route
_NAME_FAILURE = {"-2", "-3", "-5", "670002", "670003"}  # EAI_* / APR_EAI lookup errors
_DENIED = {"13"}  # EACCES: the socket's owner/mode (or SELinux) shuts out Apache's user
_RESET = {"104", "32"}  # ECONNRESET, EPIPE
_UNIX_SOCKET = re.compile(r"attempt to connect to Unix domain socket (?P<path>/\S+)")
_UPSTREAM = (
    re.compile(r"attempt to connect to (?P<u>\S+)"),
    re.compile(r"remote server (?P<u>[^\s,]+)"),
    re.compile(r"connection to backend: (?P<u>\S+)"),
    re.compile(r"disabl\w+ (?:connection|worker) for \((?P<u>[^)]+)\)"),
)

# Messages whose meaning does not depend on the error number.
RULES = (
    rule(
        r"AH10124|over the limit allowed by ResponseFieldSize",
        Cause.UPSTREAM_HEADER_TOO_BIG,
        "response header too big",
    ),
    rule(r"DNS lookup failure for", Cause.UPSTREAM_DNS, "upstream name not resolved"),
    rule(
        r"Error during SSL Handshake with remote server|SSL Proxy: ",
        Cause.UPSTREAM_TLS,
        "TLS with upstream failed",
    ),
    rule(
        r"AH01071: .*Maximum execution time", Cause.APP_TIMEOUT, "PHP max_execution_time exceeded"
    ),
    rule(
        r"AH01114|AH01079|failed to make connection to backend",
        Cause.UPSTREAM_REFUSED,
        "failed to make connection to backend",
        secondary=True,
    ),
    rule(
        r"AH00940|AH00959|AH01106|AH00898|AH01097",
        None,
        "follows from the error before it",
        secondary=True,
    ),
)


def detect(line: str) -> bool:
    return _LINE.match(line) is not None


def _by_errno(errno: str | None, default: Cause) -> Cause:
    if errno in _TIMEOUT:
        return Cause.UPSTREAM_TIMEOUT
    if errno in _NOT_HTTP:
        return Cause.UPSTREAM_INVALID
    return default


def _classify_message(msg: str, errno: str | None) -> tuple[Cause | None, str | None, bool]:
    if "AH00957" in msg or "AH02454" in msg or "attempt to connect to" in msg:
        if errno in _DENIED:
            return Cause.UPSTREAM_PERMISSION, "connect to backend: permission denied", False
        if errno in _TIMEOUT:
            return Cause.UPSTREAM_TIMEOUT, "connect to backend timed out", False
        if errno in _NAME_FAILURE:
            return Cause.UPSTREAM_DNS, "upstream name not resolved", False
        if errno in _NO_LISTENER:
            return Cause.UPSTREAM_REFUSED, "connect to backend refused", False
        return Cause.UPSTREAM_REFUSED, "connect to backend failed", False
    if "AH01102" in msg or "error reading status line" in msg:
        return _by_errno(errno, Cause.UPSTREAM_CLOSED), "error reading status line", False
    if "AH10404" in msg or "Error reading headers from backend" in msg:
        return _by_errno(errno, Cause.UPSTREAM_CLOSED), "error reading headers", False
    if "AH01067" in msg or "Failed to read FastCGI header" in msg:
        return _by_errno(errno, Cause.UPSTREAM_CLOSED), "failed to read FastCGI header", False
    if "AH01075" in msg or "Error dispatching request to" in msg:
        # Logged when mod_proxy_fcgi gives up on the backend. Timed out while polling, it
        # is the only line: php-fpm never answered. Otherwise it follows the line that
        # said what went wrong (AH01067, AH01071).
        if errno in _TIMEOUT:
            return Cause.UPSTREAM_TIMEOUT, "FastCGI backend did not answer in time", False
        if errno in _RESET:
            return Cause.UPSTREAM_CLOSED, "FastCGI backend reset the connection", True
        return None, "follows from the error before it", True
    found = first_match(RULES, msg)
    if found is None:
        return None, None, False
    return found.cause, found.what, found.secondary


def _thread(line: str) -> str | None:
    found = _THREAD.search(line)
    return found["thread"] if found else None


def records(lines: Iterable[str]) -> Iterator[str]:
    """One record per line, except that a line naming no client is joined by the next line
    its thread writes when that one names the client: the same request's failure. Threads
    interleave (requests at the same moment), so a line is held per thread."""
    held: dict[str, str] = {}  # thread -> its line waiting for the client's line
    for line in lines:
        thread = _thread(line)
        if thread is None or _LINE.match(line) is None:
            yield line
        elif _CLIENT.search(line) is not None:
            earlier = held.pop(thread, None)
            yield f"{earlier}\n{line}" if earlier is not None else line
        else:
            if thread in held:
                yield held.pop(thread)
            held[thread] = line
            if len(held) > _MAX_HELD:
                yield held.pop(next(iter(held)))
    yield from held.values()


def classify(record: str) -> LogLine | None:
    line, _, then = record.partition("\n")
    m = _LINE.match(line)
    if m is None:
        return None
    msg = m["msg"]
    errno_match = _ERRNO.search(msg)
    is_error = m["level"] in _ERROR_LEVELS
    source = None
    php = php_error(msg) if "AH01071" in msg else None
    if php is not None:
        cause, what, secondary, source = php.cause, php.what, False, php.source
    elif "AH01071" in msg and php_minor_only(msg):
        # PHP warnings and notices relayed from the app's stderr: not a failure.
        cause, what, secondary, is_error = None, None, False, False
    else:
        errno = errno_match["errno"] if errno_match else None
        cause, what, secondary = _classify_message(msg, errno)
    socket_path = _UNIX_SOCKET.search(msg)
    upstream = (
        f"unix:{socket_path['path']}"
        if socket_path
        else next((u["u"] for p in _UPSTREAM if (u := p.search(msg))), None)
    )
    client = _CLIENT.search(msg) or _CLIENT.search(then)
    return LogLine(
        when=local_time(f"{m['ts']} {m['year']}", "%a %b %d %H:%M:%S %Y"),
        is_error=is_error,
        cause=cause,
        what=what,
        upstream=upstream,
        secondary=secondary,
        client=client["c"] if client else None,
        source=source,
    )
