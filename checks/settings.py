"""The sites file: which sites exist, how to probe them, and what the bot may touch.

TOML, read with the standard library. Everything an administrator writes here is trusted
(resolvers, upstreams, log paths); only what users type is vetted by ``checks.guard``.
Trusted is not unchecked: the file is read only if it is a regular file, parsed within size
and nesting limits, and every value is checked here, once, so that a bad file stops the bot
at start-up with one line (SettingsError) instead of failing later, in a diagnosis.

It runs a little over 400 lines because every key of the file is read and checked here and
nowhere else: configuration is read in one place.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from badgateway.checks.logparse import FORMATS
from badgateway.checks.place_names import PLACE_NAME_RULE, is_place_name
from badgateway.checks.regular_file import file_kind, read_regular_file
from badgateway.checks.resolve import parse_resolver
from badgateway.checks.typed_url import BadTarget, read_url, typed_text
from badgateway.checks.upstream_spec import parse_upstream

_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
MAX_SITES_FILE_BYTES = 1024 * 1024
MAX_TOML_DEPTH = 32  # a sites file needs 3 ([[site]], logs = [{ ... }])
# Upper bound for every time in the file (about 115 days): far above any sane value, far
# below what a float or asyncio's timers would overflow on.
MAX_SECONDS = 10_000_000.0

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SITES_FILE = "sites file"  # how messages begin; load_settings puts the file's name after it
SETTINGS_KEYS = (
    "resolvers",
    "allow_networks",
    "timeout_s",
    "ca_file",
    "log_window_s",
    "reload_attempts",
    "reload_spacing_s",
    "diagnosis_budget_s",
    "allowed_channels",
    "allowed_users",
    "default_channel",
    "vantages",
    "vantage_quorum",
)
SITE_KEYS = (
    "name",
    "url",
    "expected_ips",
    "upstreams",
    "logs",
    "channel",
    "interval_s",
    "log_names",
    "vantages",
)


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
    # The places to probe this site from (vantage workers); None: the [settings] list.
    vantages: tuple[str, ...] | None = None

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
    # Places to probe from (``badgateway worker --vantage NAME`` serves each); empty: the
    # probes run wherever the default workers run, as one place.
    vantages: tuple[str, ...] = ()
    # How many places must see a site fail before monitoring opens an incident (capped at
    # the number of places, so a site probed from one place needs that one).
    vantage_quorum: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    def vantages_for(self, site: Site | None) -> tuple[str, ...]:
        """The places a site is probed from: its own list, else the file's; () for one place
        (wherever the default workers run)."""
        if site is not None and site.vantages is not None:
            return site.vantages
        return self.vantages

    def quorum_for(self, site: Site | None) -> int:
        """How many of the site's places must fail for an incident: ``vantage_quorum``, never
        more than the places there are (at least one)."""
        return max(1, min(self.vantage_quorum, len(self.vantages_for(site)) or 1))

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


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters written as escapes, so that a
    message quoting a file's content stays one printable line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fail(where: str, what: str) -> SettingsError:
    return SettingsError(one_line(f"{SITES_FILE}: {where}: {what}"))


def _shown(value: str, limit: int = 120) -> str:
    """``value`` quoted for a message: escaped by repr, and cut when long."""
    return repr(value[:limit]) + ("…" if len(value) > limit else "")


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):  # `logs = "/path"`: one item, but a string is not a list
        shown = _shown(value)
        raise _fail(where, f"expected a list, got the string {shown}: write [{shown}]")
    if not isinstance(value, list):
        raise _fail(where, f"expected a list, got {type(value).__name__}")
    return value


def _known_keys(table: dict[str, Any], known: Iterable[str], where: str) -> None:
    """A key the bot does not read is a mistake (a typo would otherwise show up much later as
    a puzzling refusal), so it stops the load, with the nearest known key when one is close."""
    names = sorted(known)
    for key in table:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(names)}"
            raise _fail(where, f"unknown key {_shown(str(key))}; {hint}")


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    items = _list(value, where)
    if not all(isinstance(v, str) and v for v in items):
        raise _fail(where, "expected a list of non-empty strings")
    return tuple(items)


def _number(
    value: Any, where: str, default: float, minimum: float = 0.0, maximum: float = MAX_SECONDS
) -> float:
    if value is None:
        return default
    # Compared before float(): an integer of 309 digits or more does not fit in a float.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not minimum < value <= maximum  # also false for nan
    ):
        raise _fail(where, f"expected a number greater than {minimum:g} and at most {maximum:g}")
    return float(value)


def _url(url: Any, where: str) -> str:
    """A site's URL: http(s), a host and a port that parse, and usable as a target."""
    if not isinstance(url, str) or not url:
        raise _fail(where, "'url' is required")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError as exc:
        raise _fail(where, f"'url' is not a URL ({exc}): {_shown(url)}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(where, f"'url' must be an http(s) URL with a host, got {_shown(url)}")
    try:
        typed = typed_text(url)
        read_url(typed, typed)
    except BadTarget as exc:
        raise _fail(where, f"'url' {_shown(url)} cannot be diagnosed: {exc}") from None
    return url


def _log_source(entry: Any, where: str) -> LogSource:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
        raise _fail(where, 'expected { path = "..." }')
    _known_keys(entry, ("path", "format", "host"), where)
    path: str = entry["path"]
    if "\0" in path:
        raise _fail(where, f"'path' {_shown(path)} holds a NUL character")
    fmt = entry.get("format")
    if fmt is not None and fmt not in FORMATS:
        shown = _shown(fmt) if isinstance(fmt, str) else type(fmt).__name__
        raise _fail(where, f"unknown format {shown}; one of {', '.join(FORMATS)}, or leave it out")
    host = entry.get("host")
    if host is not None and not (isinstance(host, str) and _HOST_NAME.fullmatch(host)):
        # It names a queue (logs@HOST) that a worker on that machine serves.
        shown = _shown(host) if isinstance(host, str) else type(host).__name__
        raise _fail(
            where,
            f"'host' must be a machine name like \"web-1\" (letters, digits, . _ -), got {shown}",
        )
    return LogSource(path=path, format=fmt, host=host)


def _vantages(value: Any, where: str) -> tuple[str, ...]:
    """Place names: each names a queue (``probe@NAME``) that a vantage worker serves."""
    names = _str_list(value, where)
    for name in names:
        if not is_place_name(name):
            raise _fail(
                where, f'{_shown(name)} is not a place name like "eu-west" ({PLACE_NAME_RULE})'
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _fail(where, f"{', '.join(_shown(n) for n in dupes)} listed twice")
    return names


def _upstreams(value: Any, where: str) -> tuple[str, ...]:
    specs = _str_list(value, where)
    for spec in specs:
        try:
            parse_upstream(spec)
        except ValueError as exc:
            raise _fail(where, str(exc)) from None
    return specs


def _parse_site(raw: Any, index: int) -> Site:
    where = f"site #{index + 1}"
    if not isinstance(raw, dict):
        raise _fail(where, "expected a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(where, "'name' is required")
    if not name.isprintable():
        # Names are shown in one-line messages and Slack posts, and typed back as targets.
        raise _fail(where, f"'name' must be printable text on one line, got {_shown(name)}")
    where = f"site {_shown(name.strip())}"
    _known_keys(raw, SITE_KEYS, where)
    url = _url(raw.get("url"), where)
    logs = tuple(
        _log_source(entry, f"{where} logs #{j + 1}")
        for j, entry in enumerate(_list(raw.get("logs"), f"{where} logs"))
    )
    expected = _str_list(raw.get("expected_ips"), f"{where} expected_ips")
    for ip in expected:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise _fail(f"{where} expected_ips", f"{_shown(ip)} is not an IP address") from None
    channel = raw.get("channel")
    if channel is not None and not isinstance(channel, str):
        raise _fail(where, "'channel' must be a string")
    return Site(
        name=name.strip(),
        url=url,
        expected_ips=expected,
        upstreams=_upstreams(raw.get("upstreams"), f"{where} upstreams"),
        logs=logs,
        channel=channel,
        interval_s=_number(raw.get("interval_s"), f"{where} interval_s", 60.0),
        log_names=_str_list(raw.get("log_names"), f"{where} log_names"),
        vantages=(
            None if raw.get("vantages") is None else _vantages(raw["vantages"], f"{where} vantages")
        ),
    )


def _resolvers(value: Any) -> tuple[str, ...]:
    """Each resolver is an IP address, optionally with a port: what checks.resolve can ask."""
    specs = _str_list(value, "settings.resolvers")
    for spec in specs:
        text = spec.strip()
        try:
            if text.startswith("[") and not re.fullmatch(r"\[[^\]]+\](:[0-9]+)?", text):
                raise ValueError(text)
            address, port = parse_resolver(text)
            ipaddress.ip_address(address)
        except ValueError:
            raise _fail(
                "settings.resolvers",
                f"{_shown(spec)} is not IP or IP:port (e.g. 10.0.0.2, 127.0.0.1:5353, [::1]:53)",
            ) from None
        if not 1 <= port <= 65535:
            raise _fail("settings.resolvers", f"{_shown(spec)}: port {port} is not 1-65535")
    return specs


def _ca_file(value: Any, env: Mapping[str, str]) -> str | None:
    """The private CA: a regular file, checked now so that a FIFO is not waited on later.
    The file's ``ca_file``, else the setting BADGATEWAY_CA_FILE (named alone in a message: it
    applies with or without a sites file)."""
    if value is None or value == "":
        chosen, named = env.get("BADGATEWAY_CA_FILE") or None, "BADGATEWAY_CA_FILE"
    else:
        chosen, named = value, f"{SITES_FILE}: settings.ca_file"
    if chosen is None:
        return None
    problem = None
    if not isinstance(chosen, str) or not chosen or "\0" in chosen:
        problem = "expected a path"
    else:
        try:
            info = os.stat(chosen)
        except OSError as exc:
            problem = f"{_shown(chosen)}: {exc.strerror or exc}"
        else:
            if not stat.S_ISREG(info.st_mode):
                kind = file_kind(info.st_mode)
                problem = f"{_shown(chosen)} is {kind}, not a regular file"
    if problem:
        raise SettingsError(one_line(f"{named}: {problem}"))
    return chosen


def parse_settings(doc: dict[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from a parsed TOML document, failing with a message that names the key.
    ``env`` (default: the environment) gives BADGATEWAY_CA_FILE when the file names no CA."""
    if not isinstance(doc, dict):
        raise _fail("document", "expected a table")
    _known_keys(doc, ("settings", "site"), "top level")
    raw = doc.get("settings")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail("[settings]", "expected a table")
    _known_keys(raw, SETTINGS_KEYS, "[settings]")
    nets: list[IPNetwork] = []
    for text in _str_list(raw.get("allow_networks"), "settings.allow_networks"):
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise _fail("settings.allow_networks", f"{_shown(text)} is not a network") from None
    site_tables = _list(doc.get("site"), "[[site]]")
    sites = [_parse_site(s, i) for i, s in enumerate(site_tables)]
    names = [s.name for s in sites]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        shown = ", ".join(_shown(n) for n in dupes)
        raise _fail("[[site]]", f"duplicate site name(s): {shown}")
    attempts = raw.get("reload_attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 10:
        raise _fail("settings.reload_attempts", "expected a whole number from 1 to 10")
    default_channel = raw.get("default_channel")
    if default_channel is not None and not isinstance(default_channel, str):
        raise _fail("settings.default_channel", "expected a string")
    quorum = raw.get("vantage_quorum", 2)
    if isinstance(quorum, bool) or not isinstance(quorum, int) or not 1 <= quorum <= 100:
        raise _fail("settings.vantage_quorum", "expected a whole number from 1 to 100")
    return Settings(
        resolvers=_resolvers(raw.get("resolvers")),
        allow_networks=tuple(nets),
        timeout_s=_number(raw.get("timeout_s"), "settings.timeout_s", 5.0),
        ca_file=_ca_file(raw.get("ca_file"), os.environ if env is None else env),
        log_window_s=_number(raw.get("log_window_s"), "settings.log_window_s", 900.0),
        reload_attempts=attempts,
        reload_spacing_s=_number(
            raw.get("reload_spacing_s"), "settings.reload_spacing_s", 0.25, minimum=-1e-9
        ),
        diagnosis_budget_s=_number(
            raw.get("diagnosis_budget_s"), "settings.diagnosis_budget_s", 14.0
        ),
        sites=tuple(sites),
        allowed_channels=_str_list(raw.get("allowed_channels"), "settings.allowed_channels"),
        allowed_users=_str_list(raw.get("allowed_users"), "settings.allowed_users"),
        default_channel=default_channel,
        vantages=_vantages(raw.get("vantages"), "settings.vantages"),
        vantage_quorum=quorum,
    )


def _toml_depth(text: str) -> tuple[int, int]:
    """The deepest nesting of arrays and inline tables, and the line it is reached on.

    Counted without recursing, outside strings and comments: tomllib recurses once per
    level and a few hundred levels end in RecursionError.
    """
    depth = deepest = 0
    line = deepest_line = 1
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\n":
            line += 1
        elif char == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif char in "\"'":
            quote = char * 3 if text.startswith(char * 3, i) else char
            i += len(quote)
            while i < n and not text.startswith(quote, i):
                if text[i] == "\n":
                    if len(quote) == 1:
                        break  # a one-line string never spans lines (tomllib says so)
                    line += 1
                elif text[i] == "\\" and char == '"':  # only basic strings have escapes
                    i += 1
                    line += text.startswith("\n", i)
                i += 1
            else:
                i += len(quote)
            continue
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest, deepest_line = depth, line
        elif char in "]}":
            depth -= 1
        i += 1
    return deepest, deepest_line


def parse_toml(text: str, where: str) -> dict[str, Any]:
    """Parse a sites file's text; every way it can fail is one SettingsError line."""
    deepest, line = _toml_depth(text)
    if deepest > MAX_TOML_DEPTH:
        raise SettingsError(
            one_line(f"{where}: nested deeper than {MAX_TOML_DEPTH} levels (line {line})")
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(one_line(f"{where}: not valid TOML: {exc}")) from None
    except RecursionError:
        raise SettingsError(one_line(f"{where}: not valid TOML: nested too deep")) from None
    except ValueError as exc:
        # int() inside tomllib: more digits than Python converts (sys.get_int_max_str_digits).
        what = (
            f"an integer longer than {sys.get_int_max_str_digits()} digits"
            if "Exceeds the limit" in str(exc)
            else str(exc)[:200]
        )
        raise SettingsError(one_line(f"{where}: not valid TOML: {what}")) from None


def load_settings(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Settings:
    """Read the sites file at ``path`` (or BADGATEWAY_SITES of ``env``, by default the
    environment); no file means built-in defaults. Every message names the file."""
    env = os.environ if env is None else env
    chosen = path if path is not None else env.get("BADGATEWAY_SITES") or None
    if chosen is None:
        return parse_settings({}, env)  # built-in defaults, and BADGATEWAY_CA_FILE if set
    where = f"sites file {_shown(os.fspath(chosen), 300)}"
    try:
        data = read_regular_file(chosen, MAX_SITES_FILE_BYTES)
    except OSError as exc:
        raise SettingsError(one_line(f"{where}: {exc.strerror or exc}")) from None
    except ValueError as exc:  # a path with a NUL character
        raise SettingsError(one_line(f"{where}: {exc}")) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"{where}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    try:
        return parse_settings(parse_toml(text, where), env)
    except SettingsError as exc:
        message = str(exc)
        if message.startswith(SITES_FILE + ":"):
            raise SettingsError(where + message[len(SITES_FILE) :]) from None
        raise
