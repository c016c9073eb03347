"""php-fpm's own error log, ``[01-May-2024 12:00:00] WARNING: [pool www] <message>``, and
PHP's error log (``php_admin_value[error_log]``), ``[01-May-2024 12:00:00 UTC] PHP Fatal
error:  <message>`` followed by its stack trace lines: both are read as format "php-fpm".

php-fpm is the app server behind a proxy: it says itself when its pool is full
("server reached pm.max_children setting") and when it kills a request that ran too long
(request_terminate_timeout: "execution timed out (31.2 sec), terminating"). PHP's own
messages say when the application itself failed: a fatal error names the file and line
that failed, which for a WordPress site names the plugin or theme to deactivate. Where they
land depends on the pool: in PHP's error_log when the pool sets one; else, with
``catch_workers_output = yes``, in php-fpm's log as ``child 12 said into stderr: "NOTICE:
PHP message: PHP Fatal error: ..."``; and, while ``fastcgi.logging`` is on (the default),
also in the proxy's error log (nginx "FastCGI sent in stderr", Apache AH01071), which is
why ``php_error`` below is shared with those parsers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from badgateway.checks.logparse import (
    LogLine,
    continued_records,
    first_match,
    local_time,
    parse_stamp,
    rule,
)
from badgateway.checks.model import Cause

_LINE = re.compile(
    r"^\[(?P<ts>\d{2}-\w{3}-\d{4} \d{2}:\d{2}:\d{2})(?:\.\d+)?\] "
    r"(?P<level>DEBUG|NOTICE|WARNING|ERROR|ALERT): (?P<msg>.*)$",
    re.DOTALL,
)
# PHP's error_log: the time stamp carries the zone PHP writes it in (date.timezone: "UTC",
# "Europe/Berlin"), and the level is PHP's name for the error type.
_PHP_LINE = re.compile(
    r"^\[(?P<ts>\d{2}-\w{3}-\d{4} \d{2}:\d{2}:\d{2}) (?P<tz>[^\]\s]+)\] "
    r"PHP (?P<level>[A-Z][A-Za-z ]*?):\s+(?P<msg>.*)$",
    re.DOTALL,
)
# Where a record starts, in either log: every other line (a stack trace) continues one.
_RECORD_START = re.compile(r"^\[\d{2}-\w{3}-\d{4} \d{2}:\d{2}:\d{2}[.\] ]")
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

# --- PHP's own messages (shared with the nginx and Apache parsers) -------------------------

# The error types PHP names in a message (main.c, php_error_cb): the ones that end the
# request, and the ones that do not.
_PHP_FATAL = re.compile(r"PHP (?:Fatal error|Parse error|Recoverable fatal error):\s+")
_PHP_MINOR = re.compile(r"PHP (?:Warning|Notice|Deprecated|Strict Standards):")
_MAX_EXECUTION = re.compile(r"Maximum execution time of .* exceeded")
_MEMORY = re.compile(r"Allowed memory size of \d+ bytes exhausted")
# "... in /var/www/x.php:12" (an uncaught exception) or "... in /var/www/x.php on line 12".
# The path stops at a quote or a backslash, so Apache's escaped "\n" does not join it.
_BLAMED = re.compile(
    r"\bin (?P<file>/[^\s'\"\\]+?\.(?:php\d?|inc|phtml|module))"
    r"(?::(?P<l1>\d+)| on line (?P<l2>\d+))"
)
_WP_PART = re.compile(
    r"/wp-content/(?:(?P<kind>mu-plugins|plugins|themes)/(?P<name>[^/]+?)(?:/|\.php$))"
)


@dataclass(frozen=True)
class PhpError:
    """A PHP error that ended a request: what it was and the file:line it blames."""

    cause: Cause
    what: str
    source: str | None


def _blamed_part(source: str | None) -> str:
    """' in plugin akismet' / ' in theme twentytwenty' for a WordPress file, else ''."""
    if source is None:
        return ""
    found = _WP_PART.search(source.rsplit(":", 1)[0])
    if found is None:
        return ""
    kind = "theme" if found["kind"] == "themes" else "plugin"
    return f" in {kind} {found['name']}"


def php_error(text: str) -> PhpError | None:
    """The PHP error that ended the request, if ``text`` quotes one (a fatal error, a parse
    error, an exhausted time or memory limit); None for warnings, notices and the rest."""
    fatal = _PHP_FATAL.search(text)
    if fatal is None:
        return None
    message = text[fatal.end() :]
    blamed = _BLAMED.search(message)
    source = f"{blamed['file']}:{blamed['l1'] or blamed['l2']}" if blamed else None
    if _MAX_EXECUTION.match(message):
        return PhpError(Cause.APP_TIMEOUT, "PHP max_execution_time exceeded", source)
    kind = "PHP memory_limit exhausted" if _MEMORY.match(message) else "PHP fatal error"
    if fatal.group().startswith("PHP Parse"):
        kind = "PHP parse error"
    return PhpError(Cause.SERVER_ERROR, kind + _blamed_part(source), source)


def php_minor_only(text: str) -> bool:
    """``text`` quotes PHP messages, all of them warnings, notices or deprecations: the app
    kept running, so the line is no error of the gateway's."""
    return _PHP_MINOR.search(text) is not None and _PHP_FATAL.search(text) is None


# --- the format ------------------------------------------------------------------------------


def detect(line: str) -> bool:
    return _LINE.match(line) is not None or _PHP_LINE.match(line) is not None


def records(lines: Iterable[str]) -> Iterator[str]:
    """One record per time-stamped line, with the stack trace lines that follow it."""
    return continued_records(lines, _RECORD_START)


def _php_time(stamp: str, zone: str) -> datetime | None:
    naive = parse_stamp(stamp, "%d-%b-%Y %H:%M:%S")
    if naive is None:
        return None
    try:
        return naive.replace(tzinfo=ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        pass
    zoned = parse_stamp(f"{stamp} {zone}", "%d-%b-%Y %H:%M:%S %z")  # "+02:00"
    return zoned or naive.astimezone()  # a zone we cannot read: take it as the local one


def _classify_php(m: re.Match[str], record: str) -> LogLine:
    found = php_error(record)
    return LogLine(
        when=_php_time(m["ts"], m["tz"]),
        is_error="error" in m["level"].lower(),
        cause=found.cause if found else None,
        what=found.what if found else None,
        source=found.source if found else None,
    )


def classify(line: str) -> LogLine | None:
    php = _PHP_LINE.match(line)
    if php is not None:
        return _classify_php(php, line)
    m = _LINE.match(line)
    if m is None:
        return None
    msg = m["msg"]
    # A PHP error a worker wrote to its stderr ("child 12 said into stderr: "NOTICE: PHP
    # message: PHP Fatal error: ...""), relayed by catch_workers_output.
    php_found = php_error(msg) if "said into stderr" in msg else None
    found = first_match(RULES, msg)
    pool = _POOL.search(msg)
    cause: Cause | None
    what: str | None
    if php_found is not None:
        cause, what, secondary = php_found.cause, php_found.what, False
    else:
        cause = found.cause if found else None
        what = found.what if found else None
        secondary = found.secondary if found else False
    return LogLine(
        when=local_time(m["ts"], "%d-%b-%Y %H:%M:%S"),
        is_error=m["level"] in _ERROR_LEVELS or php_found is not None,
        cause=cause,
        what=what,
        upstream=f"php-fpm pool {pool['pool']}" if pool else None,
        secondary=secondary,
        source=php_found.source if php_found else None,
    )
