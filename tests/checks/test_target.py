"""parse_target: what users type becomes one normalised URL to probe, or a message that
says how to write a target."""

from __future__ import annotations

import pytest

from badgateway.checks.settings import Settings, Site
from badgateway.checks.target import BadTarget, parse_target

SETTINGS = Settings(
    sites=(
        Site(name="shop", url="https://shop.example.com/health"),
        Site(name="api", url="http://api.example.com:8080/"),
    )
)


@pytest.mark.parametrize(
    ("typed", "url", "host", "port", "authority"),
    [
        ("shop.example.com", "https://shop.example.com/", "shop.example.com", 443, None),
        ("Shop.Example.COM.", "https://shop.example.com/", "shop.example.com", 443, None),
        (
            "HTTP://Shop.Example.COM:8080/a/b?x=1&y=2#frag",
            "http://shop.example.com:8080/a/b?x=1&y=2",
            "shop.example.com",
            8080,
            "shop.example.com:8080",
        ),
        ("example.com:8443", "https://example.com:8443/", "example.com", 8443, None),
        ("http://example.com:80/", "http://example.com/", "example.com", 80, "example.com"),
        ("https://example.com:443/p", "https://example.com/p", "example.com", 443, None),
        ("bücher.de", "https://xn--bcher-kva.de/", "xn--bcher-kva.de", 443, None),
        ("  padded.example.com  ", "https://padded.example.com/", "padded.example.com", 443, None),
        ("_dmarc-ish_.example.com", "https://_dmarc-ish_.example.com/", None, 443, None),
        # Numbers in any inet_aton notation become the address they are.
        ("0x7f.1", "https://127.0.0.1/", "127.0.0.1", 443, None),
        ("2130706433", "https://127.0.0.1/", "127.0.0.1", 443, None),
        ("http://0177.0.0.1:81/", "http://127.0.0.1:81/", "127.0.0.1", 81, "127.0.0.1:81"),
        ("[::1]", "https://[::1]/", "::1", 443, "[::1]"),
        ("http://[::ffff:127.0.0.1]:81/", "http://[::ffff:7f00:1]:81/", "::ffff:7f00:1", 81, None),
        (
            "https://[2606:4700::1]:8443/",
            "https://[2606:4700::1]:8443/",
            "2606:4700::1",
            8443,
            None,
        ),
    ],
)
def test_parsed(typed: str, url: str, host: str | None, port: int, authority: str | None) -> None:
    target = parse_target(typed, Settings())
    assert target.url == url
    assert target.port == port
    assert target.raw == typed.strip()
    if host is not None:
        assert target.host == host
    if authority is not None:
        assert target.authority == authority


def test_ip_targets_know_they_are_addresses() -> None:
    assert parse_target("127.1", Settings()).is_ip
    assert not parse_target("example.com", Settings()).is_ip


def test_site_names_and_hosts_map_to_sites() -> None:
    by_name = parse_target("shop", SETTINGS)
    assert by_name.url == "https://shop.example.com/health"
    assert by_name.site is not None and by_name.site.name == "shop"
    by_host = parse_target("http://api.example.com:8080/other", SETTINGS)
    assert by_host.site is not None and by_host.site.name == "api"
    assert by_host.url == "http://api.example.com:8080/other"
    assert parse_target("unknown.example.com", SETTINGS).site is None


TWO_ON_ONE_ADDRESS = Settings(
    sites=(
        Site(name="shop", url="http://127.0.0.1:18080/"),
        Site(name="blog", url="http://127.0.0.1:18082/blog/"),
        Site(name="healthy", url="http://healthy.trial.test:18081/"),
    )
)


@pytest.mark.parametrize(
    ("typed", "site", "url"),
    [
        # A URL's scheme, host and port must all match a site's.
        ("http://127.0.0.1:18080/", "shop", "http://127.0.0.1:18080/"),
        ("http://127.0.0.1:18082/x", "blog", "http://127.0.0.1:18082/x"),
        ("https://127.0.0.1:18080/", None, "https://127.0.0.1:18080/"),
        ("http://127.0.0.1/", None, "http://127.0.0.1/"),
        # host:port and a bare host take the site's URL: its scheme, port and path.
        ("127.0.0.1:18082", "blog", "http://127.0.0.1:18082/blog/"),
        ("127.0.0.1:18082/other", "blog", "http://127.0.0.1:18082/other"),
        ("healthy.trial.test", "healthy", "http://healthy.trial.test:18081/"),
        ("HEALTHY.trial.test.", "healthy", "http://healthy.trial.test:18081/"),
        ("https://healthy.trial.test/", None, "https://healthy.trial.test/"),
        ("127.0.0.1:9", None, "https://127.0.0.1:9/"),
    ],
)
def test_a_target_takes_the_settings_of_the_site_it_names(
    typed: str, site: str | None, url: str
) -> None:
    target = parse_target(typed, TWO_ON_ONE_ADDRESS)
    assert (target.site.name if target.site else None) == site
    assert target.url == url


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "no target given"),
        ("   ", "no target given"),
        ("two words.com", "without spaces"),
        ("a\tb.com", "without spaces"),
        ("evil.com\x00.example.com", "without spaces"),
        ("x" * 3000 + ".com", "at most 2048 characters"),
        ("ftp://files.example.com/", "only http and https"),
        ("javascript:alert(1)", "cannot read"),
        ("gopher://x/", "only http and https"),
        ("http://user:pw@example.com/", "user name or password"),
        ("http://user@example.com/", "user name or password"),
        ("http://", "has no host"),
        ("//evil.com", "has no host"),
        ("http:///path", "has no host"),
        ("example.com:99999", "Port out of range"),
        ("example.com:http", "cannot read"),
        ("http://example.com:0/", "port 0"),
        ("http://[::1/", "Invalid IPv6 URL"),
        ("-bad-.example.com", "not a valid host name"),
        ("a..b.com", "not a valid host name"),
        ("*.example.com", "not a valid host name"),
        ("exa mple", "without spaces"),
        ("1.2.3.4.5", "not a valid host name or address"),
        ("999.1.1.1", "not a valid host name or address"),
        ("08.0.0.1", "not a valid host name or address"),
        ("a" * 64 + ".com", "not a valid host name"),
        (("abcdefghij." * 26) + "com", "not a valid host name"),
    ],
)
def test_bad_input_says_how_to_write_a_target(typed: str, message: str) -> None:
    with pytest.raises(BadTarget, match=message) as caught:
        parse_target(typed, Settings())
    text = str(caught.value)
    # The message never echoes more than a reasonable amount of what was typed.
    assert len(text) < 600
