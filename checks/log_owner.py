"""Whose a log line is: this site's, another site's, or nobody's that can be told — and whether
it is one of this diagnosis's own requests.

One error log often serves many sites (nginx's default ``error_log``, one HAProxy log for
every frontend). A line decides a site's verdict only when it is that site's: it names the
site's Host, server/frontend/backend name or upstream, or it carries the diagnosis's own
``_bgw`` mark. A line that names something else belongs to another site and is context at
most. A line that names nothing (php-fpm's pool messages, Apache without an upstream in the
line) cannot be told apart and counts for the site whose log it is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from badgateway.checks.guard import parse_ip
from badgateway.checks.logparse import LogLine
from badgateway.checks.model import SentRequest
from badgateway.checks.settings import Site, default_port


class Owner(StrEnum):
    SITE = "site"  # this site's line
    OTHER = "other"  # another site's line
    UNKNOWN = "unknown"  # the line names nothing that tells


def _authorities(site: Site) -> frozenset[str]:
    """How a client's Host header names the site: host:port, and the bare host when the
    port is the scheme's default."""
    shown = f"[{site.host}]" if ":" in site.host else site.host
    found = {f"{shown}:{site.port}"}
    if site.port == default_port(site.scheme):
        found.add(shown)
    return frozenset(found)


def upstream_key(text: str) -> str:
    """An upstream as logs and sites files write it, made comparable: "http://10.0.0.5:80/"
    and "10.0.0.5:80" are the same; "unix:/run/php.sock" stays a path."""
    rest = text.strip().lower()
    if "://" in rest:
        rest = rest.split("://", 1)[1]
    if rest.startswith("unix:"):
        return rest.rstrip(":")
    return rest.split("/", 1)[0]


def _is_address(upstream: str) -> bool:
    """A socket path or a literal ip:port, which a proxy logs as written (a host name it
    logs resolved, so a name cannot be compared with a line)."""
    if upstream.startswith("unix:"):
        return True
    try:
        host = urlsplit("//" + upstream).hostname
    except ValueError:
        return False
    return host is not None and parse_ip(host) is not None


def _endpoint(text: str | None) -> str | None:
    """ "[::1]:80" and Apache's "::1:80" alike, as "::1:80"."""
    return text.replace("[", "").replace("]", "") if text else None


@dataclass(frozen=True)
class SiteKeys:
    """What names one site in a log line."""

    label: str  # the site's name, as findings show it
    authorities: frozenset[str]  # Host header values ("shop.example.com", "127.0.0.1:8080")
    names: frozenset[str]  # its name and log_names (server_name, frontend, backend, vhost)
    upstreams: frozenset[str]  # upstream_key() of each upstream
    # Every upstream is an address: a line naming another address is not this site's.
    upstreams_complete: bool

    @classmethod
    def of(cls, site: Site) -> SiteKeys:
        upstreams = frozenset(upstream_key(u) for u in site.upstreams)
        names = {site.name.lower(), *(n.lower() for n in site.log_names)}
        authorities = set(_authorities(site)) | {n for n in names if "." in n or ":" in n}
        return cls(
            label=site.name,
            authorities=frozenset(authorities),
            names=frozenset(names),
            upstreams=upstreams,
            upstreams_complete=bool(upstreams) and all(_is_address(u) for u in upstreams),
        )

    def claims(self, line: LogLine) -> bool:
        """The line names this site."""
        if line.host and line.host.lower() in self.authorities:
            return True
        if any(n and n.lower() in self.names for n in (line.server, line.backend)):
            return True
        return bool(line.upstream and upstream_key(line.upstream) in self.upstreams)

    def disowns(self, line: LogLine) -> bool:
        """The line names something that cannot be this site."""
        if line.host:
            return True  # a Host header this site does not answer to (checked by claims)
        if self.upstreams_complete and line.upstream:
            key = upstream_key(line.upstream)
            return _is_address(key) and key not in self.upstreams
        return False


@functools.lru_cache(maxsize=8)
def _keys_of(sites: tuple[Site, ...]) -> tuple[SiteKeys, ...]:
    """Every site's keys, once per sites file rather than once per diagnosis: a storm's 200
    diagnoses of 200 sites built 40,000 of them (seconds of CPU, while the storm waits)."""
    return tuple(SiteKeys.of(s) for s in sites)


@dataclass(frozen=True)
class LineOwners:
    """Reads lines for one diagnosis of one site."""

    site: SiteKeys
    others: tuple[SiteKeys, ...]
    mark: str  # this diagnosis's mark: its requests carry _bgw=<mark>.<n>
    sent: tuple[SentRequest, ...] = ()  # its requests, for logs that name the client's port

    @classmethod
    def of(
        cls, site: Site, sites: tuple[Site, ...], mark: str, sent: tuple[SentRequest, ...] = ()
    ) -> LineOwners:
        keys = _keys_of(sites)
        others = tuple(k for s, k in zip(sites, keys, strict=True) if s.name != site.name)
        return cls(SiteKeys.of(site), others, mark, sent)

    def own_request(self, line: LogLine) -> str | None:
        """The mark of this diagnosis's request the line is about, if it is one."""
        if line.mark and line.mark.startswith(self.mark + "."):
            return line.mark
        if line.client:
            client = _endpoint(line.client)
            return next((r.mark for r in self.sent if _endpoint(r.source) == client), None)
        return None

    def owner(self, line: LogLine) -> tuple[Owner, str | None]:
        """Whose the line is by what it names, and for another site's line, which (a site's
        name, a Host). A line about one of this diagnosis's requests (``own_request``) is the
        site's whatever it names; the caller asks that first."""
        if self.site.claims(line):
            return Owner.SITE, None
        other = next((o for o in self.others if o.claims(line)), None)
        if other is not None:
            return Owner.OTHER, other.label
        if self.site.disowns(line):
            return Owner.OTHER, line.host or (
                f"upstream {line.upstream}" if line.upstream else None
            )
        return Owner.UNKNOWN, None
