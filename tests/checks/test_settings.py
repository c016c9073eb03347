"""The sites file: what it accepts, and the one-line errors for what it does not."""

import ipaddress
from pathlib import Path

import pytest

from checks.settings import SettingsError, load_settings

GOOD = """
[settings]
resolvers = ["127.0.0.1:5353", "10.0.0.2"]
allow_networks = ["127.0.0.0/8"]
timeout_s = 5

[[site]]
name = "shop"
url = "http://shop.example.com:8080/"
expected_ips = ["203.0.113.7"]
upstreams = ["10.0.0.5:9000", "unix:/run/php/php8.2-fpm.sock"]
logs = [{ path = "/var/log/nginx/error.log" }]
channel = "#ops-shop"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sites.toml"
    path.write_text(text)
    return path


def test_the_documented_example_loads(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, GOOD))
    assert s.resolvers == ("127.0.0.1:5353", "10.0.0.2")
    assert s.allow_networks == (ipaddress.ip_network("127.0.0.0/8"),)
    site = s.site_named("shop")
    assert site is not None and site.host == "shop.example.com"
    assert site.logs[0].path == "/var/log/nginx/error.log" and site.logs[0].format is None
    assert s.site_for("SHOP.example.com.") is site


def test_no_file_means_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BADGATEWAY_SITES", raising=False)
    s = load_settings(None)
    assert s.sites == () and s.allow_networks == () and s.timeout_s == 5.0


def test_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BADGATEWAY_SITES", str(write(tmp_path, GOOD)))
    assert load_settings().site_named("shop") is not None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[[site]]\nurl='http://a/'\n", "'name' is required"),
        ("[[site]]\nname='a'\nurl='ftp://a/'\n", "'url' must be an http(s) URL"),
        ("[settings]\nallow_networks=['nope']\n", "settings.allow_networks"),
        ("[settings]\ntimeout_s=-1\n", "settings.timeout_s"),
        ("[[site]]\nname='a'\nurl='http://a/'\nexpected_ips=['x']\n", "expected_ips"),
        ("[[site]]\nname='a'\nurl='http://a/'\n[[site]]\nname='a'\nurl='http://b/'\n", "duplicate"),
        ("[[site]]\nname='a'\nurl='http://a/'\nlogs=[{path='/x', format='iis'}]\n", "format"),
        ("[[site]]\nname='a'\nurl='http://a/'\nlogs=[{path='/x', host='web 1'}]\n", "'host'"),
        ("[[site]]\nname='a'\nurl='http://a/'\nlogs=[{path='/x', host=1}]\n", "logs #1"),
        ("this is = not toml [", "not valid TOML"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace(")", r"\)")):
        load_settings(write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="No such file"):
        load_settings(tmp_path / "absent.toml")
