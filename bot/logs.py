"""How the bot's processes log: one JSON object a line for a log collector, or the readable
line on a terminal, and never a secret in either.

``configure`` installs one stderr handler on the root logger, so every logger's records
(the bot's, SAQ's, slack_sdk's request bodies at DEBUG, aiohttp's) pass through it.
``BADGATEWAY_LOG_FORMAT`` (bot.config) picks the format; unset, it is JSON unless stderr is
a terminal. A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
``exc`` when there is a traceback, and the structured fields in force: those a caller sets
for what it runs (``with fields(job_id=..., step=...)``, so a check's own log lines carry
them too) and any ``extra={...}`` of the call.

``Redact`` is a filter on that handler: whatever logger emitted a record, its message,
traceback and string fields are rewritten before any format sees them. It removes Slack
tokens by their shape (``xoxb-``, ``xoxp-``, ``xapp-``, …), passwords in URLs
(``redis://:PASSWORD@host``), ``Authorization`` header values and ``token=``/``secret=``/
``password=`` pairs, and the literal values of the process's secret settings (the signing
secret, ``ALERTS_TOKEN``, …) wherever they appear. Literal values shorter than
``MIN_LITERAL`` are left to the shapes above: replacing every "abc" in every line would make
the log unreadable.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
MIN_LITERAL = 6

_SHAPES = (
    # Slack tokens: bot, user, app-level, refresh, config, legacy workspace tokens.
    (re.compile(r"\b(xox[abposre]|xapp)-[A-Za-z0-9-]+"), r"\1-" + REDACTED),
    # user:password@ (or :password@) in any URL: Redis, proxies, webhooks.
    (
        re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)[^\s@/'\"]+@", re.I),
        r"\1" + REDACTED + "@",
    ),
    # An Authorization header as text or as a dict's repr: keep the scheme, drop the value.
    (
        re.compile(
            r"(authorization['\"]?\s*[:=]\s*['\"]?)((?:bearer|basic|token)\s+)?[^\s'\",}]+", re.I
        ),
        r"\1\2" + REDACTED,
    ),
    # token=…, client_secret: '…', "password": "…" in form bodies, query strings, reprs.
    (
        re.compile(r"(\b\w*(?:token|secret|password)['\"]?\s*[:=]\s*['\"]?)[^\s&'\",}]+", re.I),
        r"\1" + REDACTED,
    ),
)

# (name, value) pairs: a ContextVar's default must not be mutable.
_fields: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar(
    "log_fields", default=()
)
# What a LogRecord has of its own; anything else on it came from ``extra=``.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


@contextlib.contextmanager
def fields(**values: Any) -> Iterator[None]:
    """Add structured fields (site, job_id, step, diagnosis) to every line logged inside."""
    merged = {**dict(_fields.get()), **{k: v for k, v in values.items() if v is not None}}
    token = _fields.set(tuple(merged.items()))
    try:
        yield
    finally:
        _fields.reset(token)


class Redact(logging.Filter):
    """Rewrites a record so that it holds no secret (see the module's docstring)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        literals = sorted({s for s in secrets if len(s) >= MIN_LITERAL}, key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, literals))) if literals else None

    def text(self, text: str) -> str:
        if self._literal is not None:
            text = self._literal.sub(REDACTED, text)
        for pattern, replacement in _SHAPES:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format: log what there is rather than lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self.text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.text(record.exc_text)
        record.exc_info = None  # the redacted exc_text is what formats show
        if record.stack_info:
            record.stack_info = self.text(record.stack_info)
        for name in set(vars(record)) - _RECORD_ATTRS:
            value = getattr(record, name)
            if isinstance(value, str):
                setattr(record, name, self.text(value))
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record (see the module's docstring for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in sorted(set(vars(record)) - _RECORD_ATTRS):
            doc.setdefault(name, getattr(record, name))
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, default=str, ensure_ascii=False)


class WithFields(logging.Filter):
    """Copies the structured fields in force (``fields``) onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _fields.get():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def configure(
    level: int,
    log_format: str | None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Log records at ``level`` and above to ``stream`` (stderr) as ``log_format`` says:
    "json", "text", or None for JSON unless the stream is a terminal. Returns the handler."""
    stream = stream if stream is not None else sys.stderr
    as_json = log_format == "json" or (log_format is None and not _is_terminal(stream))
    handler = logging.StreamHandler(stream)
    handler.addFilter(WithFields())
    handler.addFilter(Redact(secrets))  # after WithFields: the fields are redacted too
    handler.setFormatter(JsonLines() if as_json else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False
