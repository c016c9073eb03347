"""The SSRF guard: which addresses a user-typed target may make the bot connect to.

Users type hosts; the bot then connects from inside the network. So every address a
probe connects to passes ``check_address`` first: loopback, private, link-local,
cloud-metadata, CGNAT, multicast and reserved ranges are refused unless the sites file's
``allow_networks`` opens them. Hosts written as numbers in any notation the C library
accepts (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``::ffff:127.0.0.1``) are decoded first,
so a disguised address is judged as the address it is.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(ValueError):
    """A target points at an address the settings do not allow the bot to probe."""


# Ranges refused by default, with the reason given to the user. ipaddress's own flags
# cover most; these are named so the refusal says *why*.
_DENIED: list[tuple[IPNetwork, str]] = [
    (ipaddress.ip_network("0.0.0.0/8"), "a 'this network' address"),
    (ipaddress.ip_network("127.0.0.0/8"), "a loopback address"),
    (ipaddress.ip_network("10.0.0.0/8"), "a private address"),
    (ipaddress.ip_network("172.16.0.0/12"), "a private address"),
    (ipaddress.ip_network("192.168.0.0/16"), "a private address"),
    (ipaddress.ip_network("100.64.0.0/10"), "a carrier-grade NAT (CGNAT) address"),
    (ipaddress.ip_network("169.254.169.254/32"), "a cloud metadata address"),
    (ipaddress.ip_network("169.254.0.0/16"), "a link-local address"),
    (ipaddress.ip_network("192.0.0.0/24"), "an IETF protocol address"),
    (ipaddress.ip_network("198.18.0.0/15"), "a benchmarking address"),
    (ipaddress.ip_network("224.0.0.0/4"), "a multicast address"),
    (ipaddress.ip_network("255.255.255.255/32"), "the broadcast address"),
    (ipaddress.ip_network("240.0.0.0/4"), "a reserved address"),
    (ipaddress.ip_network("::/128"), "the unspecified address"),
    (ipaddress.ip_network("::1/128"), "a loopback address"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "a cloud metadata address"),
    (ipaddress.ip_network("fc00::/7"), "a private (unique local) address"),
    (ipaddress.ip_network("fe80::/10"), "a link-local address"),
    (ipaddress.ip_network("fec0::/10"), "a site-local address"),
    (ipaddress.ip_network("ff00::/8"), "a multicast address"),
    (ipaddress.ip_network("100::/64"), "a discard-only address"),
    (ipaddress.ip_network("2001:db8::/32"), "a documentation address"),
    (ipaddress.ip_network("3fff::/20"), "a documentation address"),
    (ipaddress.ip_network("5f00::/16"), "a segment-routing (SRv6) address"),
    # RFC 8215 local-use NAT64: translates to the operator's own (possibly private) IPv4.
    (ipaddress.ip_network("64:ff9b:1::/48"), "a local-use NAT64 address"),
]


def parse_ip(host: str) -> IPAddress | None:
    """Decode ``host`` as an IP address in any notation, or return None for a name.

    Accepts dotted quads and the shorthand forms inet_aton takes (``127.1``, ``2130706433``,
    octal ``0177.0.0.1``, hex ``0x7f.0.0.1``), bracketed IPv6, and IPv6 with a zone id.
    """
    text = host.strip().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        text = text.split("%", 1)[0]
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return _parse_inet_aton(text)


_HEX = re.compile(r"[0-9a-fA-F]{0,8}")
_OCTAL = re.compile(r"[0-7]{1,11}")
_DECIMAL = re.compile(r"[0-9]{1,10}")


def _parse_inet_aton(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        if not part:
            return None
        # Digits only: int() would also take a sign, "_" and spaces, which inet_aton does not.
        if part.lower().startswith("0x"):
            if not _HEX.fullmatch(part[2:]):
                return None
            value = int(part[2:] or "0", 16)
        elif len(part) > 1 and part.startswith("0"):
            if not _OCTAL.fullmatch(part[1:]):
                return None
            value = int(part[1:], 8)
        else:
            if not _DECIMAL.fullmatch(part):
                return None
            value = int(part, 10)
        values.append(value)
    # inet_aton: the last part fills all remaining bytes.
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    number = number << (8 * (4 - len(head))) | last
    return ipaddress.IPv4Address(number)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv6 one (mapped, compatible, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    packed = int(ip)
    if packed >> 32 == 0 and packed > 1:  # ::a.b.c.d (deprecated IPv4-compatible)
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if packed >> 32 == 0xFFFF0000:  # ::ffff:0:a.b.c.d (SIIT IPv4-translated, RFC 6145)
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64 well-known prefix
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def refusal_reason(ip: IPAddress, allow_networks: Iterable[IPNetwork] = ()) -> str | None:
    """Why the bot must not connect to ``ip``, or None if it may."""
    allow = list(allow_networks)
    inner = embedded_ipv4(ip)
    # The embedded IPv4 address first: it is where the packets really go, and the reason
    # given should name it (metadata, loopback…), not just 'non-public'.
    candidates: list[IPAddress] = [ip] if inner is None else [inner, ip]
    # Opening an IPv6 range must not open the IPv4 address an address embeds (allowing
    # ::/0 would otherwise admit ::ffff:169.254.169.254): the embedded one decides.
    decisive = ip if inner is None else inner
    if any(decisive.version == net.version and decisive in net for net in allow):
        return None
    for candidate in candidates:
        for net, reason in _DENIED:
            if candidate.version == net.version and candidate in net:
                return reason
        if not candidate.is_global:
            return "a non-public address"
    return None


def check_address(
    ip: IPAddress | str, allow_networks: Iterable[IPNetwork] = (), *, host: str | None = None
) -> None:
    """Raise TargetRefused unless the bot may connect to ``ip``."""
    addr = ip if not isinstance(ip, str) else parse_ip(ip)
    if addr is None:
        raise TargetRefused(f"{ip!r} is not an IP address")
    reason = refusal_reason(addr, allow_networks)
    if reason:
        shown = f"{host} ({addr})" if host and host != str(addr) else str(addr)
        raise TargetRefused(
            f"{shown} is {reason}; the bot does not probe it unless the sites file's "
            "settings.allow_networks includes it"
        )
