"""How a site's ``upstreams`` are written: ``host:port``, ``http(s)://host:port`` or
``unix:/path``, parsed into an ``Upstream``.

Apart from the probe (checks.upstream_probe) because the sites file checks every entry when
it loads, and configuration must not depend on the code that talks to the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit


class UpstreamKind(StrEnum):
    """How an upstream is written, which decides how deep it is probed."""

    TCP = "tcp"  # host:port: connect only
    HTTP = "http"
    HTTPS = "https"
    UNIX = "unix"  # unix:/path: connect only


@dataclass(frozen=True)
class Upstream:
    """One ``upstreams`` entry of a site, parsed."""

    spec: str
    kind: UpstreamKind
    host: str = ""
    port: int = 0
    path: str = ""  # unix socket path

    @property
    def label(self) -> str:
        if self.kind is UpstreamKind.UNIX:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_upstream(spec: str) -> Upstream:
    """'host:port', 'http://host:port', 'https://host:port', 'unix:/path'. Raises ValueError."""
    text = spec.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/"):
            raise ValueError(f"{spec!r}: a unix socket is written unix:/absolute/path")
        return Upstream(spec, UpstreamKind.UNIX, path=path)
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{spec!r}: expected http://host:port or https://host:port")
        default = 443 if parts.scheme == "https" else 80
        kind = UpstreamKind.HTTPS if parts.scheme == "https" else UpstreamKind.HTTP
        return Upstream(spec, kind, parts.hostname, parts.port or default)
    parts = urlsplit("//" + text)
    if not parts.hostname:
        raise ValueError(f"{spec!r}: expected host:port")
    try:
        port = parts.port or 80  # nginx's own default for a server without a port
    except ValueError:
        raise ValueError(f"{spec!r}: the port is not a number from 1 to 65535") from None
    return Upstream(spec, UpstreamKind.TCP, parts.hostname, port)
