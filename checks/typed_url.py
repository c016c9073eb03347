"""What a user typed, read as a URL: every check on it that needs no settings.

A sites file's ``url`` passes these same checks when the file is read (checks.settings),
and a target typed in chat passes them before it is matched to a site (checks.target).
Anything that fails raises BadTarget with one printable line (what was typed is quoted with
repr, so control characters cannot break that line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from badgateway.checks.guard import parse_ip


class BadTarget(ValueError):
    """What the user typed cannot be a target; the message says how to write one."""


HOW = "write a host name or URL, e.g. shop.example.com or https://shop.example.com/health"
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_MAX_INPUT = 2048


@dataclass(frozen=True)
class UrlParts:
    scheme: str  # http or https, lower-case
    host: str  # lower-case name, or canonical IP text for a literal address
    port: int | None  # None when the URL names none
    path: str
    query: str


def typed_text(text: object) -> str:
    """What was typed, stripped: one host name or URL, of a sane length, printable."""
    if not isinstance(text, str):
        raise BadTarget(f"no target given; {HOW}")
    raw = text.strip()
    if not raw:
        raise BadTarget(f"no target given; {HOW}")
    if len(raw) > _MAX_INPUT:
        raise BadTarget(f"a target is at most {_MAX_INPUT} characters long; {HOW}")
    # Not printable: control and format characters, separators, lone surrogates.
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise BadTarget(
            f"a target is one host name or URL without spaces or control characters; {HOW}"
        )
    return raw


def read_url(url_text: str, raw: str) -> UrlParts:
    """``url_text`` (with a scheme) split and checked; ``raw`` is what the user typed, for
    the messages."""
    try:
        parts = urlsplit(url_text)
        port = parts.port
    except ValueError as exc:
        raise BadTarget(f"cannot read {raw!r} as a URL ({exc}); {HOW}") from None
    if port == 0:
        raise BadTarget(f"port 0 cannot be connected to; {HOW}")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BadTarget(f"only http and https URLs can be diagnosed, not {scheme}:; {HOW}")
    if parts.username is not None or parts.password is not None:
        raise BadTarget("a target must not carry a user name or password; leave them out")
    if not parts.hostname:
        raise BadTarget(f"{raw!r} has no host; {HOW}")
    return UrlParts(scheme, _normalise_host(parts.hostname), port, parts.path, parts.query)


def _address(host: str) -> str | None:
    """``host`` as canonical IP text when it is an address in any notation, else None."""
    try:
        ip = parse_ip(host)
    except ValueError:
        # inet_aton-style parts that int() reads as negative ("0x-d"): not an address, and
        # not a name to look up either, since the guard would trip on it the same way.
        raise BadTarget(f"{host!r} is not a valid host name or address; {HOW}") from None
    return None if ip is None else str(ip)


def _normalise_host(host: str) -> str:
    address = _address(host)
    if address is not None:
        return address  # 0x7f.1 -> 127.0.0.1, so the guard judges what will be dialled
    host = host.rstrip(".").lower()
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise BadTarget(f"{host!r} is not a valid host name; {HOW}") from None
    # IDNA maps full-width digits and dots to ASCII ("0X。0" -> "0x.0"): what comes out may
    # be an address only now, and must be judged as the address it is.
    address = _address(ascii_host)
    if address is not None:
        return address
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise BadTarget(f"{host!r} is not a valid host name; {HOW}")
    if ascii_host.replace(".", "").isdigit():
        raise BadTarget(f"{host!r} is not a valid host name or address; {HOW}")
    return ascii_host
