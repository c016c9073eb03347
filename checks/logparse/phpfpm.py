"""php-fpm's own error log: ``[01-May-2024 12:00:00] WARNING: [pool www] <message>``.

php-fpm is the app server behind a proxy: it says itself when its pool is full
("server reached pm.max_children setting") and when it kills a request that ran too long
(request_terminate_timeout: "execution timed out (31.2 sec), terminating").
"""

from __future__ import annotations

import re

from checks.logparse import LogLine, first_match, local_time, rule
from checks.model import Cause

_LINE = re.compile(
    r"^\[(?P<ts>\d{2}-\w{3}-\d{4} \d{2}:\d{2}:\d{2})(?:\.\d+)?\] "
    r"(?P<level>DEBUG|NOTICE|WARNING|ERROR|ALERT): (?P<msg>.*)$"
)
_ERROR_LEVELS = frozenset({"ERROR", "ALERT"})
_POOL = re.compile(r"\[pool (?P<pool>[^\]]+)\]")

RULES = (
    rule(
        r"server reached (?:pm\.)?max_children setting",
        Cause.OVERLOAD,
        "pool full: pm.max_children reached",
    ),
    rule(
        r"execution timed out .*terminating",
        Cause.APP_TIMEOUT,
        "request killed by request_terminate_timeout",
    ),
    rule(
        r"Maximum execution time of .* exceeded",
        Cause.APP_TIMEOUT,
        "PHP max_execution_time exceeded",
    ),
    rule(r"exited on signal (?:11|7|6|9) ", Cause.UPSTREAM_CLOSED, "worker died mid-request"),
    rule(r"exited on signal 15 |executing too slow", None, "follows a timeout", secondary=True),
)


def detect(line: str) -> bool:
    return _LINE.match(line) is not None


def classify(line: str) -> LogLine | None:
    m = _LINE.match(line)
    if m is None:
        return None
    msg = m["msg"]
    found = first_match(RULES, msg)
    pool = _POOL.search(msg)
    return LogLine(
        when=local_time(m["ts"], "%d-%b-%Y %H:%M:%S"),
        is_error=m["level"] in _ERROR_LEVELS,
        cause=found.cause if found else None,
        what=found.what if found else None,
        upstream=f"php-fpm pool {pool['pool']}" if pool else None,
        secondary=found.secondary if found else False,
    )
