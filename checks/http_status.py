"""What an HTTP status says about the server that answered: the one rule every probe of a
site (the reload and host steps, the upstream probe, the monitor) and every log parser
judges an answer by."""

from __future__ import annotations

# Statuses a gateway gives when it failed the request itself (and logs why), Cloudflare's
# 52x among them.
GATEWAY_STATUSES = frozenset({502, 503, 504, *range(520, 531)})


def server_failed(status: int) -> bool:
    """Whether the server (or a gateway in front of it) failed the request: a 5xx. Anything
    else, even a 404, is the site answering."""
    return status >= 500
