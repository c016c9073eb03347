"""Read proxy and app-server logs: detect a log's format and classify the lines that explain
a gateway error (nginx, Apache, HAProxy, php-fpm, ...).

Every format module has the same shape: ``detect(line) -> bool`` (is this line in my
format?) and ``classify(record) -> LogLine | None`` (None when the record is not in the
format at all). A record is one line, unless the module also defines ``records(lines)``
that groups lines into records (a varnishlog transaction spans many lines). A classified
record says when it was written, whether the server rates it an error, the cause it is
evidence for when the message is one we know, and whatever names the site, client and
request it concerns, so that a log shared by several sites is read per site and the
diagnosis's own requests (``_bgw=`` in their URL) are recognised.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from types import ModuleType

from badgateway.checks.model import Cause


@dataclass(frozen=True)
class LogLine:
    """What one log line says, as far as gateway errors are concerned."""

    when: datetime | None  # timezone-aware; None when the line carries no time stamp
    is_error: bool  # the server rates it an error (counted even when not understood)
    cause: Cause | None = None  # the cause this line is evidence for, if we know the message
    what: str | None = None  # short description of the message, e.g. "connect() refused"
    upstream: str | None = None  # the upstream the line names (address or backend/server)
    # A consequence of another failure ("no live upstreams", "failed to make connection"):
    # it claims its cause only when the log shows no first-hand failure line.
    secondary: bool = False
    # What the record says about whose request it was; None where the format does not say.
    host: str | None = None  # the authority the client asked for (nginx `host:`)
    server: str | None = None  # the proxy's name for the site (nginx `server:`, a frontend)
    backend: str | None = None  # the proxy's name for the app pool (HAProxy, Varnish)
    client: str | None = None  # the client's "ip:port", where the record gives the port
    mark: str | None = None  # the ``_bgw`` value of a badgateway request (set by ``classifier``)
    # The application file the message blames ("/var/www/wp-content/plugins/x/x.php:12"): a
    # PHP fatal error names it, and the runbook's next step ("deactivate the plugin") needs it.
    source: str | None = None
    # The HTTP status a request log's record gives (an access line); None for an error line.
    # A log with such records names every request, not only the failed ones.
    status: int | None = None


@dataclass(frozen=True)
class Rule:
    """A message pattern and what it means."""

    pattern: re.Pattern[str]
    cause: Cause | None
    what: str
    secondary: bool = False


def rule(pattern: str, cause: Cause | None, what: str, *, secondary: bool = False) -> Rule:
    return Rule(re.compile(pattern), cause, what, secondary)


def first_match(rules: Iterable[Rule], message: str) -> Rule | None:
    return next((r for r in rules if r.pattern.search(message)), None)


# Time stamps remembered by their text: a log's lines share their second, and strptime was
# most of a storm's CPU (200 sites reading one shared error log: 63 % of a worker's samples).
STAMPS_KEPT = 4096


@functools.lru_cache(maxsize=STAMPS_KEPT)
def parse_stamp(text: str, fmt: str) -> datetime | None:
    """``datetime.strptime(text, fmt)``, or None if it does not parse."""
    try:
        return datetime.strptime(text, fmt)
    except ValueError:
        return None


@functools.lru_cache(maxsize=STAMPS_KEPT)
def local_time(text: str, fmt: str) -> datetime | None:
    """Parse a time stamp the server wrote in its local time zone; None if it does not parse."""
    parsed = parse_stamp(text, fmt)
    return parsed.astimezone() if parsed is not None else None


Detect = Callable[[str], bool]
Classify = Callable[[str], LogLine | None]
Records = Callable[[Iterable[str]], Iterator[str]]

# badgateway's own requests carry ``_bgw=<diagnosis mark>.<attempt>`` in their query string
# (checks.http_probe.cache_busted); every log that quotes the URL quotes the mark.
_MARK = re.compile(r"[?&]_bgw=([0-9A-Za-z][0-9A-Za-z.-]{0,40})")


def mark_in(text: str) -> str | None:
    """The ``_bgw`` mark a record quotes, if any."""
    found = _MARK.search(text)
    return found.group(1) if found else None


def one_line_records(lines: Iterable[str]) -> Iterator[str]:
    """The usual shape: every line is a record of its own."""
    return iter(lines)


def continued_records(lines: Iterable[str], start: re.Pattern[str]) -> Iterator[str]:
    """Records that begin with a line matching ``start`` and go on over the lines that do
    not (a quoted stack trace, a message with newlines in it)."""
    record: list[str] = []
    for line in lines:
        if record and not start.match(line):
            record.append(line)
            continue
        if record:
            yield "\n".join(record)
        record = [line]
    if record:
        yield "\n".join(record)


# LogSource.format name -> module in this package.
_MODULE_OF = {
    "nginx": "nginx",
    "apache": "apache",
    "haproxy": "haproxy",
    "php-fpm": "phpfpm",
    "caddy": "caddy",
    "varnish": "varnish",
}
FORMATS: tuple[str, ...] = tuple(_MODULE_OF)


@functools.cache
def _modules() -> dict[str, ModuleType]:
    # Imported on first use: the format modules import this one for LogLine and rule().
    return {name: importlib.import_module(f"{__name__}.{mod}") for name, mod in _MODULE_OF.items()}


# Records remembered with what they say: every site behind a proxy reads the same shared log's
# tail, so in a storm each line was classified once per site (200 times) in the same process.
# A record's classification depends on its text alone, and LogLine is frozen. Enough for the
# 2 MiB tail a scan reads (logscan.TAIL_BYTES) at ~130 bytes a line: a scan that cycled
# through more lines than are kept would find none of them. A record longer than
# KEPT_RECORD_CHARS (a stack trace) is classified each time, so what is kept stays bounded
# (~32 MiB of text at worst, a few MiB for ordinary lines).
CLASSIFIED_KEPT = 16384
KEPT_RECORD_CHARS = 2048


def _classified(fmt: str, record: str) -> LogLine | None:
    if len(record) > KEPT_RECORD_CHARS:
        return _classify(fmt, record)
    return _classified_kept(fmt, record)


@functools.lru_cache(maxsize=CLASSIFIED_KEPT)
def _classified_kept(fmt: str, record: str) -> LogLine | None:
    return _classify(fmt, record)


def _classify(fmt: str, record: str) -> LogLine | None:
    classify: Classify = _modules()[fmt].classify
    parsed = classify(record)
    if parsed is None or parsed.mark is not None or "_bgw=" not in record:
        return parsed
    return replace(parsed, mark=mark_in(record))


def classifier(fmt: str) -> Classify:
    """The format's ``classify``, with the record's ``_bgw`` mark filled in."""
    if fmt not in _modules():
        raise KeyError(f"unknown log format {fmt!r}")

    def marked(record: str) -> LogLine | None:
        return _classified(fmt, record)

    return marked


def record_splitter(fmt: str) -> Records:
    """How the format groups lines into records (one line each unless it says otherwise)."""
    records: Records = getattr(_modules()[fmt], "records", one_line_records)
    return records


def detect_format(lines: Iterable[str], sample: int = 200) -> str | None:
    """The format most of the first ``sample`` non-empty lines are in; None if none fits."""
    detectors: dict[str, Detect] = {name: mod.detect for name, mod in _modules().items()}
    votes = dict.fromkeys(detectors, 0)
    seen = 0
    for line in lines:
        if not line.strip():
            continue
        seen += 1
        for name, detect in detectors.items():
            if detect(line):
                votes[name] += 1
        if seen >= sample:
            break
    best = max(votes, key=lambda name: votes[name])
    return best if votes[best] else None
