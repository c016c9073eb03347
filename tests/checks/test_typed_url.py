"""What a user typed, read as a URL (checks.typed_url): the checks that need no settings."""

import pytest

from badgateway.checks.typed_url import BadTarget, read_url, typed_text


def test_a_url_is_split_and_its_host_normalised() -> None:
    parts = read_url("https://Shop.Example.COM.:8443/a?b=1", "x")
    assert (parts.scheme, parts.host, parts.port, parts.path, parts.query) == (
        "https",
        "shop.example.com",
        8443,
        "/a",
        "b=1",
    )
    assert read_url("http://0x7f.1/", "x").host == "127.0.0.1"


@pytest.mark.parametrize(
    "url", ["ftp://shop.example", "http://user:pw@shop.example/", "http://shop.example:0/"]
)
def test_urls_that_cannot_be_targets(url: str) -> None:
    with pytest.raises(BadTarget):
        read_url(url, url)


@pytest.mark.parametrize("text", ["", "   ", "a b", "x\u200by", "x" * 2049, None])
def test_text_that_cannot_be_a_target(text: object) -> None:
    with pytest.raises(BadTarget):
        typed_text(text)
