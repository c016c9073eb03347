"""The sites file: what it accepts, and the one-line errors for what it does not."""

import ipaddress
from pathlib import Path

import pytest

from badgateway.checks.settings import SettingsError, load_settings, one_line

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


SITE_A = '[[site]]\nname = "a"\nurl = "http://a.example/"\n'


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


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        (
            '[settings]\nallow_network = ["127.0.0.0/8"]\n',
            "[settings]",
            "did you mean 'allow_networks'?",
        ),
        ("[settings]\ntimeout = 5\n", "[settings]", "did you mean 'timeout_s'?"),
        (
            SITE_A + 'upstream = ["10.0.0.5:80"]\n',
            "site 'a'",
            "did you mean 'upstreams'?",
        ),
        (
            SITE_A + 'log = ["/var/log/x"]\n',
            "site 'a'",
            "did you mean 'logs'?",
        ),
        (
            SITE_A + 'logs = [{ path = "/x", fromat = "nginx" }]\n',
            "site 'a' logs #1",
            "did you mean 'format'?",
        ),
        ("[setting]\ntimeout_s = 5\n", "top level", "did you mean 'settings'?"),
        (
            SITE_A + 'logs = "/var/log/x"\n',
            "site 'a' logs",
            "expected a list, got the string '/var/log/x': write ['/var/log/x']",
        ),
        (
            '[settings]\nresolvers = ["not a resolver:xx"]\n',
            "settings.resolvers",
            "'not a resolver:xx' is not IP or IP:port",
        ),
        (
            '[settings]\nresolvers = ["127.0.0.1:99999"]\n',
            "settings.resolvers",
            "port 99999 is not 1-65535",
        ),
        (
            '[settings]\nca_file = "/nonexistent/ca.pem"\n',
            "settings.ca_file",
            "'/nonexistent/ca.pem': No such file or directory",
        ),
        ('[settings]\nca_file = "/"\n', "settings.ca_file", "is a directory, not a regular file"),
        (
            "[settings]\ndiagnosis_budget_s = -1\n",
            "settings.diagnosis_budget_s",
            "expected a number greater than 0",
        ),
        ("[settings]\ntimeout_s = 0\n", "settings.timeout_s", "expected a number greater than 0"),
        (
            SITE_A + "interval_s = -60\n",
            "site 'a' interval_s",
            "expected a number greater than 0",
        ),
    ],
)
def test_each_bad_value_is_one_line_naming_file_key_and_the_fix(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as raised:
        load_settings(path)
    message = str(raised.value)
    assert message == one_line(message)
    assert message.startswith(f"sites file '{path}': {where}: "), message
    assert what in message, message


def test_a_sites_file_that_is_not_utf8_names_the_file_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_bytes(b'[settings]\ndefault_channel = "#caf\xe9"\n')
    with pytest.raises(SettingsError) as raised:
        load_settings(path)
    assert str(raised.value) == f"sites file '{path}': not UTF-8 text (byte 34); save it as UTF-8"


def test_the_sites_path_and_ca_file_come_from_the_env_given(tmp_path: Path) -> None:
    """bot.config hands over what it read from the environment and `.env`."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here\n")
    path = write(tmp_path, GOOD)
    env = {"BADGATEWAY_SITES": str(path), "BADGATEWAY_CA_FILE": str(ca)}
    settings = load_settings(env=env)
    assert [s.name for s in settings.sites] == ["shop"] and settings.ca_file == str(ca)


def test_vantages_for_every_site_and_one_site(tmp_path: Path) -> None:
    text = (
        '[settings]\nvantages = ["eu-west", "us-east"]\nvantage_quorum = 3\n'
        + SITE_A
        + '[[site]]\nname = "b"\nurl = "http://b.example/"\nvantages = ["ap-south"]\n'
        + '[[site]]\nname = "c"\nurl = "http://c.example/"\nvantages = []\n'
    )
    s = load_settings(write(tmp_path, text))
    a, b, c = (s.site_named(n) for n in "abc")
    assert s.vantages_for(a) == ("eu-west", "us-east") and s.quorum_for(a) == 2
    assert s.vantages_for(b) == ("ap-south",) and s.quorum_for(b) == 1
    assert s.vantages_for(c) == () and s.quorum_for(c) == 1  # one place: wherever workers run
    assert s.vantages_for(None) == ("eu-west", "us-east")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[settings]\nvantages = ['eu west']\n", "settings.vantages: 'eu west' is not a place"),
        ("[settings]\nvantages = 'eu-west'\n", "expected a list"),
        ("[settings]\nvantages = ['a', 'a']\n", "listed twice"),
        ("[settings]\nvantage_quorum = 0\n", "settings.vantage_quorum"),
        (SITE_A + "vantages = ['x/y']\n", "site 'a' vantages"),
        ("[settings]\nvantage = ['a']\n", "did you mean 'vantages'"),
        # The rule `worker --vantage` applies too: a place no worker could serve is refused.
        (f"[settings]\nvantages = ['{'a' * 64}']\n", "at most 63"),
        ("[settings]\nvantages = ['here']\n", "not 'here'"),
    ],
)
def test_bad_vantages_say_what_is_wrong(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(write(tmp_path, text))
