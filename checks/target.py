"""Turn what a user typed (a URL, a bare host, or a site's name) into a Target to probe.

Anything a user can type either becomes a Target or raises BadTarget with one printable line
(what was typed is quoted with repr, so control characters cannot break that line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from checks.guard import parse_ip
from checks.settings import Settings, Site, default_port


class BadTarget(ValueError):
    """What the user typed cannot be a target; the message says how to write one."""


_HOW = "write a host name or URL, e.g. shop.example.com or https://shop.example.com/health"
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_MAX_INPUT = 2048


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


def _address(host: str) -> str | None:
    """``host`` as canonical IP text when it is an address in any notation, else None."""
    try:
        ip = parse_ip(host)
    except ValueError:
        # inet_aton-style parts that int() reads as negative ("0x-d"): not an address, and
        # not a name to look up either, since the guard would trip on it the same way.
        raise BadTarget(f"{host!r} is not a valid host name or address; {_HOW}") from None
    return None if ip is None else str(ip)


def _normalise_host(host: str) -> str:
    address = _address(host)
    if address is not None:
        return address  # 0x7f.1 -> 127.0.0.1, so the guard judges what will be dialled
    host = host.rstrip(".").lower()
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise BadTarget(f"{host!r} is not a valid host name; {_HOW}") from None
    # IDNA maps full-width digits and dots to ASCII ("0X。0" -> "0x.0"): what comes out may
    # be an address only now, and must be judged as the address it is.
    address = _address(ascii_host)
    if address is not None:
        return address
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise BadTarget(f"{host!r} is not a valid host name; {_HOW}")
    if ascii_host.replace(".", "").isdigit():
        raise BadTarget(f"{host!r} is not a valid host name or address; {_HOW}")
    return ascii_host


def parse_target(text: str, settings: Settings) -> Target:
    """Parse user input into a Target; raises BadTarget with a message fit to show the user."""
    if not isinstance(text, str):
        raise BadTarget(f"no target given; {_HOW}")
    raw = text.strip()
    if not raw:
        raise BadTarget(f"no target given; {_HOW}")
    if len(raw) > _MAX_INPUT:
        raise BadTarget(f"a target is at most {_MAX_INPUT} characters long; {_HOW}")
    # Not printable: control and format characters, separators, lone surrogates.
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise BadTarget(
            f"a target is one host name or URL without spaces or control characters; {_HOW}"
        )
    site = settings.site_named(raw)
    url_text = site.url if site else raw
    typed_scheme = "://" in url_text
    if not typed_scheme:
        url_text = "https://" + url_text
    try:
        parts = urlsplit(url_text)
        port = parts.port
    except ValueError as exc:
        raise BadTarget(f"cannot read {raw!r} as a URL ({exc}); {_HOW}") from None
    if port == 0:
        raise BadTarget(f"port 0 cannot be connected to; {_HOW}")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BadTarget(f"only http and https URLs can be diagnosed, not {scheme}:; {_HOW}")
    if parts.username is not None or parts.password is not None:
        raise BadTarget("a target must not carry a user name or password; leave them out")
    if not parts.hostname:
        raise BadTarget(f"{raw!r} has no host; {_HOW}")
    host = _normalise_host(parts.hostname)
    path, query = parts.path, parts.query
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
