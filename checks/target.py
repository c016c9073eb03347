"""Turn what a user typed (a URL, a bare host, or a site's name) into a Target to probe.

Anything a user can type either becomes a Target or raises BadTarget with one printable line
(the checks that need no settings are checks.typed_url's).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from badgateway.checks.guard import parse_ip
from badgateway.checks.settings import Settings, Site, default_port
from badgateway.checks.typed_url import BadTarget, read_url, typed_text

__all__ = ["BadTarget", "Target", "parse_target"]


@dataclass(frozen=True)
class Target:
    raw: str  # what the user typed
    url: str  # normalised URL that is probed
    scheme: str
    host: str  # lower-case name, or canonical IP text for a literal address
    port: int
    site: Site | None = None

    @property
    def is_ip(self) -> bool:
        return parse_ip(self.host) is not None

    @property
    def authority(self) -> str:
        """host[:port] as a Host header carries it (port only when not the default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = default_port(self.scheme)
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(text: str, settings: Settings) -> Target:
    """Parse user input into a Target; raises BadTarget with a message fit to show the user."""
    raw = typed_text(text)
    site = settings.site_named(raw)
    url_text = site.url if site else raw
    typed_scheme = "://" in url_text
    if not typed_scheme:
        url_text = "https://" + url_text
    parts = read_url(url_text, raw)
    scheme, host, port, path, query = parts.scheme, parts.host, parts.port, parts.path, parts.query
    if site is None and typed_scheme:
        site = settings.site_for(host, scheme, port or default_port(scheme))
    elif site is None:
        # A bare host or host:port of a configured site is that site: its scheme, its port.
        site = settings.site_for(host, None, port)
        if site is not None:
            site_parts = urlsplit(site.url)
            scheme, port = site.scheme, site.port
            if not path and not query:
                path, query = site_parts.path, site_parts.query
    port = port or default_port(scheme)
    shown_host = f"[{host}]" if ":" in host else host
    netloc = shown_host if port == default_port(scheme) else f"{shown_host}:{port}"
    url = urlunsplit((scheme, netloc, path or "/", query, ""))
    return Target(raw=raw, url=url, scheme=scheme, host=host, port=port, site=site)
