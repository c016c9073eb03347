"""Hostile sites files, targets and command lines: one line and exit 2, never a traceback.

Sites files go through ``load_settings`` (bytes on disk) and ``parse_settings`` (documents
built directly, with values of every TOML type in every key); targets through
``parse_target``; the command line as a user runs it, in a subprocess. The issue's inputs are
a regression corpus; Hypothesis adds its own (``examples`` below says how many).
"""

from __future__ import annotations

import datetime
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from badgateway.checks.guard import parse_ip
from badgateway.checks.settings import (
    SETTINGS_KEYS,
    Settings,
    SettingsError,
    Site,
    load_settings,
    parse_settings,
)
from badgateway.checks.target import BadTarget, Target, parse_target
from tests.hypothesis_profiles import CHEAP, ONE_PROCESS_EACH, examples
from tests.lab import REPO

CLI_TIMEOUT_S = 30


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message and message.isprintable(), repr(message)


def load_bytes(data: bytes) -> Settings:
    """load_settings on a file holding exactly ``data``."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "sites.toml")
        path.write_bytes(data)
        return load_settings(path)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("BADGATEWAY_SITES", None)
    return subprocess.run(
        [sys.executable, "-m", "badgateway.bot.cli", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
        cwd=cwd,
        check=False,
    )


def assert_refused_in_one_line(done: subprocess.CompletedProcess[str], words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("badgateway: "), done.stderr[-2000:]
    assert words in lines[0], lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


# The regression corpus: the sites files of issue 9, and their neighbours ----------------------

SITE = '[[site]]\nname = "shop"\nurl = "http://shop.example.com/"\n'
SITES_CORPUS: list[tuple[str, bytes, str]] = [
    # (name, the file's bytes, words in the one line)
    ("1 byte, not UTF-8", b"\xe8", "not UTF-8 text (byte 0)"),
    ("UTF-16", "[settings]".encode("utf-16"), "not UTF-8"),
    ("url //[::1", b'[[site]]\nname = "a"\nurl = "//[::1"\n', "Invalid IPv6 URL"),
    ("url http://]/", b'[[site]]\nname = "a"\nurl = "http://]/"\n', "Invalid IPv6 URL"),
    ("url port 99999", b'[[site]]\nname = "a"\nurl = "http://a:99999/"\n', "'url' is not a URL"),
    ("url with a space", b'[[site]]\nname = "a"\nurl = "http://a b/"\n', "cannot be diagnosed"),
    ("arrays 500 deep", b"x = " + b"[" * 500 + b"]" * 500 + b"\n", "nested deeper than 32"),
    ("tables 500 deep", b"x = " + b"{a = " * 500 + b"1" + b"}" * 500 + b"\n", "nested deeper"),
    ("unclosed, 100k deep", b"x = " + b"[" * 100_000, "nested deeper than 32"),
    ("a 4,363-digit integer", b"x = " + b"1" * 4363 + b"\n", "integer longer than 4300 digits"),
    ("timeout_s, 313 digits", b"[settings]\ntimeout_s = " + b"1" * 313 + b"\n", "timeout_s"),
    ("timeout_s = nan", b"[settings]\ntimeout_s = nan\n", "settings.timeout_s"),
    ("timeout_s = inf", b"[settings]\ntimeout_s = inf\n", "settings.timeout_s"),
    ("budget = 1e308", b"[settings]\ndiagnosis_budget_s = 1e308\n", "diagnosis_budget_s"),
    ("resolver port 99999", b'[settings]\nresolvers = ["127.0.0.1:99999"]\n', "port 99999"),
    ("resolver not IP", b'[settings]\nresolvers = ["not a resolver:xx"]\n', "not IP or IP:port"),
    ("resolver a name", b'[settings]\nresolvers = ["dns.example.com"]\n', "not IP or IP:port"),
    ("resolver [::1", b'[settings]\nresolvers = ["[::1"]\n', "not IP or IP:port"),
    ("resolvers a string", b'[settings]\nresolvers = "10.0.0.2"\n', "expected a list"),
    ("name with a newline", b'[[site]]\nname = "a\\nb"\nurl = "ftp://x/"\n', r"got 'a\nb'"),
    ("name with a BEL", b'[[site]]\nname = "a\\u0007"\nurl = "http://a/"\n', r"'a\x07'"),
    ("duplicate names", (SITE + SITE).encode(), "duplicate site name(s): 'shop'"),
    ("site a table", b'[site]\nname = "a"\n', "[[site]]: expected a list"),
    ("site an integer", b"site = 1\n", "[[site]]: expected a list"),
    ("logs an integer", (SITE + "logs = 5\n").encode(), "logs: expected a list"),
    ("logs a string", (SITE + 'logs = "/var/log/x"\n').encode(), "logs: expected a list"),
    ("log path with NUL", (SITE + 'logs = ["/x\\u0000"]\n').encode(), "NUL"),
    ("log format a number", (SITE + "logs = [{path = '/x', format = 1}]\n").encode(), "int"),
    ("upstream relative", (SITE + 'upstreams = ["unix:run/x"]\n').encode(), "unix:/absolute"),
    ("upstream port", (SITE + 'upstreams = ["10.0.0.5:99999"]\n').encode(), "upstreams"),
    ("upstream [::1", (SITE + 'upstreams = ["http://[::1"]\n').encode(), "upstreams"),
    ("settings an array", b"settings = [1]\n", "[settings]: expected a table"),
    ("a date as timeout", b"[settings]\ntimeout_s = 2024-01-01\n", "settings.timeout_s"),
    ("bad date", b"[settings]\nx = 2024-02-30\n", "not valid TOML"),
    ("ca_file a directory", b'[settings]\nca_file = "/"\n', "a directory, not a regular file"),
    ("ca_file missing", b'[settings]\nca_file = "/nonexistent/ca.pem"\n', "No such file"),
    ("ca_file a device", b'[settings]\nca_file = "/dev/null"\n', "a character device"),
]


@pytest.mark.parametrize(
    ("data", "words"), [pytest.param(data, words, id=name) for name, data, words in SITES_CORPUS]
)
def test_bad_sites_files_are_one_line(data: bytes, words: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_bytes(data)
    assert_one_line(str(raised.value))
    assert words in str(raised.value)


def test_files_that_are_not_regular_files_are_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "sites.fifo"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a FIFO"), (tmp_path, "a directory"), (Path("/dev/zero"), "device")):
        with pytest.raises(SettingsError, match=kind) as raised:
            load_settings(path)
        assert_one_line(str(raised.value))
    (tmp_path / "ca.fifo").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "ca.fifo")
    with pytest.raises(SettingsError, match=r"settings\.ca_file: .* is a FIFO"):
        load_bytes(f'[settings]\nca_file = "{tmp_path / "ca.fifo"}"\n'.encode())


def test_a_sites_file_over_a_mebibyte_is_refused() -> None:
    with pytest.raises(SettingsError, match="larger than 1048576 bytes"):
        load_bytes(b"# " + b"x" * (1024 * 1024) + b"\n")


def test_good_files_still_load(tmp_path: Path) -> None:
    """The stricter checks take nothing away from a file that was right."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until a probe needs it\n")
    text = f"""
[settings]
resolvers = ["127.0.0.1:5353", "10.0.0.2", "[::1]:53", "::1"]
allow_networks = ["127.0.0.0/8"]
timeout_s = 5
ca_file = "{ca}"
log_window_s = 86400
reload_spacing_s = 0
"default_channel" = 'literal [[[ string'
allowed_users = [\"\"\"
[[[[ not nesting, a string \\\"\"\" still inside
\"\"\"]

[[site]]
name = "café&shop"   # any printable name; a comment [[[[
url = "http://bücher.example.com:8080/health?x=1"
upstreams = ["10.0.0.5:9000", "unix:/run/php/php8.2-fpm.sock", "https://[::1]:8443"]
logs = ["/var/log/nginx/error.log", {{ path = "/var/log/php.log", format = "php-fpm" }}]
"""
    settings = load_bytes(text.encode())
    assert settings.resolvers == ("127.0.0.1:5353", "10.0.0.2", "[::1]:53", "::1")
    assert settings.ca_file == str(ca) and settings.reload_spacing_s == 0.0
    assert settings.default_channel == "literal [[[ string"
    assert settings.allowed_users == ('[[[[ not nesting, a string """ still inside\n',)
    site = settings.site_named("café&shop")
    assert site is not None and site.host == "bücher.example.com" and len(site.logs) == 2
    assert parse_target("café&shop", settings).url == (
        "http://xn--bcher-kva.example.com:8080/health?x=1"
    )


# Properties: sites files ------------------------------------------------------------------------

# Pieces TOML is made of, so that random text gets past the first character now and then.
toml_pieces = st.sampled_from(
    [
        "[settings]\n",
        "[[site]]\n",
        "name = ",
        "url = ",
        "timeout_s = ",
        "resolvers = ",
        "logs = ",
        "upstreams = ",
        "ca_file = ",
        '"http://a/"',
        '"//[::1"',
        '"a\\nb"',
        "'lit'",
        '"""',
        "'''",
        "[",
        "]",
        "{",
        "}",
        ",",
        ".",
        "=",
        "#",
        "\n",
        " ",
        "1" * 400,
        "9" * 4400,
        "1e999",
        "nan",
        "inf",
        "0x",
        "-",
        "true",
        "1979-05-27T07:32:00Z",
        "\\",
        "\\u0000",
        "\x00",
        "\ufeff",
    ]
)
toml_ish_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(toml_pieces, st.text(max_size=5)), max_size=40).map("".join),
)


@examples(CHEAP)
@given(toml_ish_text)
@example("x = " + "[" * 500 + "]" * 500)
@example("x = " + "1" * 4363)
@example('[[site]]\nname = "a"\nurl = "//[::1"\n')
def test_sites_file_text_loads_or_fails_in_one_line(text: str) -> None:
    try:
        settings = load_bytes(text.encode("utf-8", "surrogatepass"))
    except SettingsError as exc:
        event("refused")
        assert_one_line(str(exc))
    else:
        event("loaded")
        assert isinstance(settings, Settings)


@examples(CHEAP)
@given(st.binary(max_size=200))
@example(b"\xe8")
def test_sites_file_bytes_load_or_fail_in_one_line(data: bytes) -> None:
    try:
        load_bytes(data)
    except SettingsError as exc:
        assert_one_line(str(exc))


# Every type a TOML document can hold, including the ones no key expects.
toml_scalars = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**4000),
    st.floats(),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.just(datetime.datetime(1979, 5, 27, tzinfo=datetime.UTC)),
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
urls = st.one_of(
    st.sampled_from(["http://shop.example.com/", "//[::1", "http://]/", "http://a:99999/"]),
    st.text(max_size=20).map(lambda t: "http://" + t),
    st.text(max_size=20),
)
resolvers = st.one_of(
    st.sampled_from(["127.0.0.1:99999", "not a resolver:xx", "[::1]:53", "10.0.0.2", "[::1"]),
    st.text(max_size=20),
)
site_tables = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(["shop", "a\nb", ""]), st.text(max_size=10)),
        "url": urls,
        "expected_ips": st.lists(st.text(max_size=15)) | toml_values,
        "upstreams": st.lists(st.one_of(urls, st.text(max_size=20)), max_size=3) | toml_values,
        "logs": st.lists(
            st.one_of(
                st.text(max_size=10),
                st.fixed_dictionaries(
                    {}, optional={"path": toml_values, "format": toml_values, "host": toml_values}
                ),
            ),
            max_size=3,
        )
        | toml_values,
        "channel": toml_values,
        "interval_s": toml_values,
        "log_names": toml_values,
    },
)
settings_tables = st.fixed_dictionaries(
    {},
    optional={key: toml_values for key in SETTINGS_KEYS if key != "resolvers"}
    | {"resolvers": st.lists(resolvers, max_size=3) | toml_values},
)
# Near misses: sites that are right but for the odd field, so that whole sites get built.
printable_names = st.text(
    st.characters(categories=("L", "N", "P", "S"), include_characters=" "), min_size=1, max_size=12
).filter(str.strip)
host_names = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9-]{1,10}){0,2}", fullmatch=True)
good_urls = st.builds(
    "{}://{}:{}/{}".format,
    st.sampled_from(["http", "https"]),
    host_names,
    st.integers(min_value=1, max_value=65535),
    st.text("abc/?=&%", max_size=8),
)
near_site_tables = st.fixed_dictionaries(
    {"name": printable_names, "url": good_urls},
    optional={
        "expected_ips": st.lists(st.ip_addresses().map(str), max_size=2),
        "upstreams": st.lists(
            st.one_of(
                st.builds("10.0.0.{}:{}".format, st.integers(0, 255), st.integers(1, 65535)),
                st.sampled_from(["unix:/run/php.sock", "https://[::1]:8443"]),
            ),
            max_size=2,
        ),
        "logs": st.lists(st.sampled_from(["/var/log/a.log", {"path": "/x", "format": "nginx"}])),
        "interval_s": st.floats(min_value=0.5, max_value=3600),
        "channel": st.text(max_size=8),
    },
)
near_settings_tables = st.fixed_dictionaries(
    {},
    optional={
        "resolvers": st.lists(
            st.one_of(
                st.ip_addresses().map(str),
                st.builds("{}:{}".format, st.ip_addresses(v=4), st.integers(0, 100_000)),
                st.builds("[{}]:{}".format, st.ip_addresses(v=6), st.integers(0, 100_000)),
            ),
            max_size=3,
        ),
        "allow_networks": st.lists(
            st.builds("{}/{}".format, st.ip_addresses(v=4), st.integers(0, 33)), max_size=2
        ),
        "timeout_s": st.floats(min_value=0.1, max_value=60) | st.floats() | st.integers(),
        "reload_attempts": st.integers(1, 10) | st.integers(),
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "settings": near_settings_tables | settings_tables | toml_values,
        "site": st.lists(site_tables | near_site_tables | toml_values, max_size=3)
        | st.lists(near_site_tables, max_size=3, unique_by=lambda site: str(site["name"]).strip())
        | toml_values,
    },
)


@examples(CHEAP)
@given(documents)
@example({"settings": {"timeout_s": 10**313}})
@example({"settings": {"resolvers": ["127.0.0.1:99999"]}})
@example({"site": [{"name": "a\nb", "url": "http://a/"}, {"name": "a\nb", "url": "http://b/"}]})
def test_sites_documents_build_settings_or_fail_in_one_line(doc: dict[str, Any]) -> None:
    try:
        settings = parse_settings(doc)
    except SettingsError as exc:
        event("refused")
        assert_one_line(str(exc))
        return
    event(f"accepted, {len(settings.sites)} site(s)")
    # What was accepted is what the rest of the bot can use without another check.
    for number in (settings.timeout_s, settings.log_window_s, settings.diagnosis_budget_s):
        assert math.isfinite(number) and 0 < number <= 1e7
    for site in settings.sites:
        assert site.name.isprintable() and 1 <= site.port <= 65535
        parse_target(site.url, settings)


# Properties: targets -------------------------------------------------------------------------

SETTINGS = Settings(sites=(Site("shop", "https://shop.example.com/health"),))
target_pieces = st.sampled_from(
    [
        *"htps:/[]@%.:0123456789abcdefx-_ \n\t\x00\x7f?#",
        *("http://", "https://", "[::1]", "xn--", "::", "0x", "0x-", "%25", "٣", "²", "\u202e"),
        *("\ud800", "ß", "。", "shop", "\u200d", "\u00ad"),
    ]
)
typed = st.one_of(st.text(max_size=60), st.lists(target_pieces, max_size=30).map("".join))


@examples(CHEAP)
@given(typed)
@example("0x-d")
@example("http://0x-d/")
@example("//[::1")
@example("http://]/")
@example("shop\n")
@example("exa\u202emple.com")
@example("0X\u30020")  # IDNA turns it into 0x.0, which is the address 0.0.0.0
def test_targets_parse_or_fail_in_one_line(text: str) -> None:
    try:
        target = parse_target(text, SETTINGS)
    except BadTarget as exc:
        event("refused")
        assert_one_line(str(exc))
        return
    event("a target")
    assert isinstance(target, Target)
    assert target.scheme in ("http", "https") and 1 <= target.port <= 65535
    # The normalised URL is a fixed point: parsing it again gives the same target.
    again = parse_target(target.url, SETTINGS)
    assert (again.url, again.host, again.port) == (target.url, target.host, target.port)


# The command line ------------------------------------------------------------------------------

CLI_CORPUS = [
    name
    for name, _, _ in SITES_CORPUS
    if name
    in {
        "1 byte, not UTF-8",
        "url //[::1",
        "arrays 500 deep",
        "a 4,363-digit integer",
        "timeout_s, 313 digits",
        "resolver port 99999",
        "resolver not IP",
        "name with a newline",
    }
]


@pytest.mark.parametrize("name", CLI_CORPUS)
def test_the_cli_says_one_line_and_exits_2_for_the_issues_files(tmp_path: Path, name: str) -> None:
    data, words = next((d, w) for n, d, w in SITES_CORPUS if n == name)
    sites = tmp_path / "sites.toml"
    sites.write_bytes(data)
    assert_refused_in_one_line(run_cli("diagnose", "shop", "--sites", str(sites)), words)


def test_the_cli_does_not_wait_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "sites.toml"
    os.mkfifo(fifo)
    assert_refused_in_one_line(run_cli("diagnose", "shop", "--sites", str(fifo)), "a FIFO")
    (tmp_path / "ca.pem").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "ca.pem")
    sites = tmp_path / "ca-sites.toml"
    sites.write_text(f'[settings]\nca_file = "{tmp_path / "ca.pem"}"\n')
    assert_refused_in_one_line(run_cli("diagnose", "shop", "--sites", str(sites)), "a FIFO")


def test_the_cli_does_not_wait_on_a_dotenv_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".env")
    assert_refused_in_one_line(run_cli("status", cwd=tmp_path), "'.env': a FIFO")


def test_the_cli_quotes_a_target_with_control_characters(tmp_path: Path) -> None:
    done = run_cli("diagnose", "a\nb.example.com")
    assert_refused_in_one_line(done, "without spaces or control characters")


def test_only_digits_make_an_address() -> None:
    # int() would read a sign or "_" in a hex or decimal part; inet_aton does not, and
    # neither does the guard: "0x-d" is a host name (as a browser reads it), not -13.
    assert parse_ip("0x-d") is None and parse_ip("0x7_f.1") is None and parse_ip("+1") is None
    assert parse_target("0x-d", Settings()).host == "0x-d"
    assert str(parse_ip("0x7f.1")) == "127.0.0.1"


@examples(ONE_PROCESS_EACH)
@given(toml_ish_text)
@example("x = " + "[" * 500 + "]" * 500)
def test_the_cli_exits_0_or_2_with_one_line_for_any_sites_file(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        sites = Path(directory, "sites.toml")
        sites.write_bytes(text.encode("utf-8", "surrogatepass"))
        # A loopback target: refused unless the file opens loopback, and then diagnosed
        # quickly (nothing listens on port 1).
        done = run_cli("diagnose", "http://127.0.0.1:1/", "--sites", str(sites), "--json")
    event(f"exit {done.returncode}")
    assert done.returncode in (0, 2), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    if done.returncode == 2:
        assert len(done.stderr.splitlines()) == 1, done.stderr[-2000:]
