"""aiohttp's log of the requests it could not parse, one INFO line each.

aiohttp answers a request it cannot parse (a header over its 8 KiB line limit, too many
headers, a bad request line, broken chunking) with a 400 itself, then logs the parser's
exception at ERROR with a traceback — once per request, and anyone can send such requests to
the Slack endpoint or the alert webhooks. The fault is the client's: the record becomes one
line that names the kind of error but not the request's bytes (a header may hold a token).
The server's own errors keep their tracebacks.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOG = "aiohttp.server"


class OneLineForMalformedHttp(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError) or not 400 <= (error.code or 400) < 500:
            return True
        # Only aiohttp's words: what follows its colon is the request's own bytes.
        reason = " ".join(str(error.message).split(":", 1)[0].split())[:200]
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "refused a malformed HTTP request from %s: %s (%s)"
        record.args = (peer, reason, type(error).__name__)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def quiet_malformed_requests() -> None:
    """Install the filter on aiohttp's server log (once, however often it is called)."""
    server_log = logging.getLogger(SERVER_LOG)
    if not any(isinstance(f, OneLineForMalformedHttp) for f in server_log.filters):
        server_log.addFilter(OneLineForMalformedHttp())
