"""The sites file: which sites exist, how to probe them, and what the bot may touch.

TOML, read with the standard library. Everything an administrator writes here is trusted
(resolvers, upstreams, log paths); only what users type is vetted by ``checks.guard``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from checks.logparse import FORMATS

_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def default_port(scheme: str) -> int:
    """The port a URL of ``scheme`` means when it names none."""
    return 443 if scheme.lower() == "https" else 80


class SettingsError(ValueError):
    """The sites file is missing or malformed; the message names the offending key."""


@dataclass(frozen=True)
class LogSource:
    path: str
    format: str | None = None  # a checks.logparse.FORMATS name; None = detect
    host: str | None = None  # the machine holding the file; routes log jobs to its worker


@dataclass(frozen=True)
class Site:
    name: str
    url: str
    expected_ips: tuple[str, ...] = ()
    upstreams: tuple[str, ...] = ()  # "host:port", "https://host:port", "unix:/path"
    logs: tuple[LogSource, ...] = ()
    channel: str | None = None
    interval_s: float = 60.0
    # Other names the site goes by in logs shared with other sites: Host names it answers
    # to, nginx server_name, HAProxy frontend/backend, Varnish backend.
    log_names: tuple[str, ...] = ()

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme.lower()

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or default_port(parts.scheme)


@dataclass(frozen=True)
class Settings:
    resolvers: tuple[str, ...] = ()  # empty: the system's resolver
    allow_networks: tuple[IPNetwork, ...] = ()
    timeout_s: float = 5.0  # per probe
    ca_file: str | None = None
    log_window_s: float = 900.0  # how far back log lines count
    reload_attempts: int = 3
    reload_spacing_s: float = 0.25
    diagnosis_budget_s: float = 14.0  # a whole diagnosis finishes inside this
    sites: tuple[Site, ...] = ()
    # Slack-side policy; empty tuples mean "everyone".
    allowed_channels: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    default_channel: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def site_named(self, name: str) -> Site | None:
        for site in self.sites:
            if site.name == name:
                return site
        return None

    def site_for(
        self, host: str, scheme: str | None = None, port: int | None = None
    ) -> Site | None:
        """The site served at ``host`` (and ``scheme`` and ``port`` where given): two sites
        on one address differ by port, so a port that was written must match."""
        host = host.lower().rstrip(".")
        for site in self.sites:
            if site.host != host:
                continue
            if scheme is not None and site.scheme != scheme.lower():
                continue
            if port is not None and site.port != port:
                continue
            return site
        return None


def _fail(where: str, what: str) -> SettingsError:
    return SettingsError(f"sites file: {where}: {what}")


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(where, "expected a list of non-empty strings")
    return tuple(value)


def _number(value: Any, where: str, default: float, minimum: float = 0.0) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= minimum:
        raise _fail(where, f"expected a number greater than {minimum:g}")
    return float(value)


def _parse_site(raw: Any, index: int) -> Site:
    where = f"site #{index + 1}"
    if not isinstance(raw, dict):
        raise _fail(where, "expected a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(where, "'name' is required")
    where = f"site '{name}'"
    url = raw.get("url")
    if not isinstance(url, str) or not url:
        raise _fail(where, "'url' is required")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(where, f"'url' must be an http(s) URL with a host, got {url!r}")
    logs: list[LogSource] = []
    for j, entry in enumerate(raw.get("logs") or []):
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise _fail(f"{where} logs #{j + 1}", 'expected { path = "..." }')
        fmt = entry.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise _fail(
                f"{where} logs #{j + 1}",
                f"unknown format {fmt!r}; one of {', '.join(FORMATS)}, or leave it out",
            )
        host = entry.get("host")
        if host is not None and not (isinstance(host, str) and _HOST_NAME.fullmatch(host)):
            # It names a queue (logs@HOST) that a worker on that machine serves.
            raise _fail(
                f"{where} logs #{j + 1}",
                f"'host' must be a machine name like \"web-1\" (letters, digits, . _ -), "
                f"got {host!r}",
            )
        logs.append(LogSource(path=entry["path"], format=fmt, host=host))
    expected = _str_list(raw.get("expected_ips"), f"{where} expected_ips")
    for ip in expected:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise _fail(f"{where} expected_ips", f"{ip!r} is not an IP address") from None
    channel = raw.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise _fail(where, "'channel' must be a string")
    return Site(
        name=name.strip(),
        url=url,
        expected_ips=expected,
        upstreams=_str_list(raw.get("upstreams"), f"{where} upstreams"),
        logs=tuple(logs),
        channel=channel,
        interval_s=_number(raw.get("interval_s"), f"{where} interval_s", 60.0),
        log_names=_str_list(raw.get("log_names"), f"{where} log_names"),
    )


def parse_settings(doc: dict[str, Any]) -> Settings:
    """Build Settings from a parsed TOML document, failing with a message that names the key."""
    raw = doc.get("settings") or {}
    if not isinstance(raw, dict):
        raise _fail("[settings]", "expected a table")
    nets: list[IPNetwork] = []
    for text in _str_list(raw.get("allow_networks"), "settings.allow_networks"):
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise _fail("settings.allow_networks", f"{text!r} is not a network") from None
    sites = [_parse_site(s, i) for i, s in enumerate(doc.get("site") or [])]
    names = [s.name for s in sites]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _fail("[[site]]", f"duplicate site name(s): {', '.join(dupes)}")
    ca_file = raw.get("ca_file")
    if ca_file is not None and not isinstance(ca_file, str):
        raise _fail("settings.ca_file", "expected a path")
    attempts = raw.get("reload_attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 10:
        raise _fail("settings.reload_attempts", "expected a whole number from 1 to 10")
    default_channel = raw.get("default_channel")
    if default_channel is not None and not isinstance(default_channel, str):
        raise _fail("settings.default_channel", "expected a string")
    return Settings(
        resolvers=_str_list(raw.get("resolvers"), "settings.resolvers"),
        allow_networks=tuple(nets),
        timeout_s=_number(raw.get("timeout_s"), "settings.timeout_s", 5.0),
        ca_file=ca_file or os.environ.get("BADGATEWAY_CA_FILE") or None,
        log_window_s=_number(raw.get("log_window_s"), "settings.log_window_s", 900.0),
        reload_attempts=attempts,
        reload_spacing_s=_number(
            raw.get("reload_spacing_s"), "settings.reload_spacing_s", 0.25, minimum=-1e-9
        ),
        diagnosis_budget_s=_number(raw.get("diagnosis_budget_s"), "settings.budget", 14.0),
        sites=tuple(sites),
        allowed_channels=_str_list(raw.get("allowed_channels"), "settings.allowed_channels"),
        allowed_users=_str_list(raw.get("allowed_users"), "settings.allowed_users"),
        default_channel=default_channel,
    )


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the sites file at ``path`` (or $BADGATEWAY_SITES); no file means built-in defaults."""
    chosen = path if path is not None else os.environ.get("BADGATEWAY_SITES") or None
    if chosen is None:
        return Settings()
    p = Path(chosen)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"sites file {str(p)!r}: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"sites file {str(p)!r}: not valid TOML: {exc}") from None
    return parse_settings(doc)
