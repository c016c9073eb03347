"""`badgateway` as a user runs it: exit codes, stderr lines, the JSON document; `status` and
`worker` when Redis is out of reach or the worker could not post its results."""

import json
import os
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.lab import REPO
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_slack import SIGNING_SECRET, SlackStandIn
from tests.lab.process import free_port, running


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "badgateway.bot.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
        check=False,
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("", "no target given"),
        ("ftp://files.example.com/", "only http and https"),
        ("http://user:pw@example.com/", "user name or password"),
        ("exa mple.com", "without spaces"),
        ("127.0.0.1", "loopback"),
        ("0x7f.1", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://example.com:99999/", "cannot read"),
    ],
)
def test_bad_input_exits_2_with_one_line(target: str, message: str) -> None:
    done = run_cli("diagnose", target)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert done.stdout == ""


def test_bad_sites_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "sites.toml"
    bad.write_text("[settings]\ntimeout_s = 'soon'\n")
    done = run_cli("diagnose", "example.com", "--sites", str(bad))
    assert done.returncode == 2 and "settings.timeout_s" in done.stderr


def test_json_document_shape(tmp_path: Path) -> None:
    """A loopback port where nothing listens, allowed by the sites file."""
    sites = tmp_path / "sites.toml"
    sites.write_text(
        '[settings]\nallow_networks = ["127.0.0.0/8"]\ntimeout_s = 2\nreload_attempts = 1\n'
    )
    port = free_port()
    done = run_cli("diagnose", f"http://127.0.0.1:{port}/", "--sites", str(sites), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["target"] == f"http://127.0.0.1:{port}/"
    assert doc["url"] == f"http://127.0.0.1:{port}/"
    assert set(doc["verdict"]) >= {"cause", "summary", "next_steps"}
    names = [s["name"] for s in doc["steps"]]
    assert names == sorted(names, key=["reload", "dns", "firewall", "logs", "host"].index)
    for s in doc["steps"]:
        assert s["status"] in {"ok", "warn", "fail", "skipped", "error"}
        assert set(s) >= {"name", "status", "summary", "findings", "duration_ms"}
    assert isinstance(doc["duration_ms"], int)


def _queue_env(tmp_path: Path, redis_url: str, **settings: str) -> dict[str, str]:
    """The environment of a queue command: only what the test gives (no token, no sink)."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "BADGATEWAY_"))}
    return {**kept, "PYTHONPATH": str(REPO), "REDIS_URL": redis_url, **settings}


@pytest.mark.parametrize("command", ["status", "worker"])
def test_queue_command_without_redis_says_so_in_one_line_and_exits_1(
    command: str, tmp_path: Path
) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    env = _queue_env(tmp_path, url, SLACK_BOT_TOKEN="xoxb-cli")
    done = run_cli(command, env=env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Redis at 127.0.0.1:" in lines[0], done.stderr
    assert "hunter2" not in done.stderr and done.stdout == ""


def test_worker_without_a_way_to_post_refuses_to_start(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    done = run_cli("worker", env=_queue_env(tmp_path, redis_server.url), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "SLACK_BOT_TOKEN is not set" in lines[0], done.stderr
    client = redis_server.client()
    try:
        assert client.keys("bgw:saq:*") == []  # it never became a worker
    finally:
        client.close()


# --- every bad setting: one line, exit 2, nothing started --------------------------------------

SITE = '[[site]]\nname = "shop"\nurl = "http://shop.example/"\n'


def _clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment without any badgateway setting of the machine running the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BADGATEWAY_", "SLACK_"))}
    env.pop("REDIS_URL", None)
    return {**env, "PYTHONPATH": str(REPO), **settings}


@pytest.mark.parametrize(
    ("command", "sites", "settings", "line"),
    [
        (
            "serve",
            '[settings]\nallow_network = ["127.0.0.0/8"]\n',
            {},
            "[settings]: unknown key 'allow_network'; did you mean 'allow_networks'?",
        ),
        (
            "worker",
            SITE,
            {"BADGATEWAY_QUEUE_HEARTBEAT_S": "abc"},
            "BADGATEWAY_QUEUE_HEARTBEAT_S must be a whole number greater than 0, got 'abc'",
        ),
        (
            "worker",
            SITE,
            {},
            "site 'shop' has no 'channel' and settings.default_channel is not set",
        ),
        (
            "worker",
            SITE + 'channel = "#shop"\n',
            {"BADGATEWAY_SINK": "no_such_module:sink"},
            "BADGATEWAY_SINK='no_such_module:sink' cannot be loaded (No module named",
        ),
        (
            "diagnose",
            '[settings]\nresolvers = ["127.0.0.1:99999"]\n',
            {},
            "settings.resolvers: '127.0.0.1:99999': port 99999 is not 1-65535",
        ),
        (
            "shell",
            '[settings]\nca_file = "/nonexistent/ca.pem"\n',
            {},
            "settings.ca_file: '/nonexistent/ca.pem': No such file or directory",
        ),
        (
            "serve",
            SITE.replace(
                'url = "http://shop.example/"', 'url = "http://shop.example/"\nlogs = "/l"'
            ),
            {},
            "site 'shop' logs: expected a list, got the string '/l': write ['/l']",
        ),
    ],
)
def test_a_bad_setting_stops_each_command_in_one_line_before_anything_starts(
    tmp_path: Path, command: str, sites: str, settings: dict[str, str], line: str
) -> None:
    (tmp_path / "sites.toml").write_text(sites)
    port = free_port()
    redis_port = free_port()  # nothing listens: a worker that got as far as Redis would say so
    env = _clean_env(
        tmp_path,
        SLACK_BOT_TOKEN="xoxb-1",
        SLACK_SIGNING_SECRET="secret",
        SLACK_API_URL=f"http://127.0.0.1:{free_port()}/api/",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        PORT=str(port),
        BADGATEWAY_SITES="sites.toml",
        **settings,
    )
    args = {"diagnose": ["diagnose", "shop"], "worker": ["worker"]}.get(command, [command])
    done = run_cli(*args, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr  # one line
    assert line in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""  # the shell never greeted, no diagnosis ran
    with pytest.raises(OSError):  # serve never listened
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_the_sites_file_named_in_dotenv_is_the_one_every_command_uses(tmp_path: Path) -> None:
    """`BADGATEWAY_SITES` set in `.env` was ignored: `/502 sites` said no site was configured."""
    (tmp_path / "sites.toml").write_text(SITE)
    (tmp_path / ".env").write_text("BADGATEWAY_SITES=sites.toml\n")
    done = subprocess.run(
        [sys.executable, "-m", "badgateway.bot.cli", "shell"],
        input="/502 sites\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(tmp_path),
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "shop" in done.stdout and "No sites are configured" not in done.stdout


def test_version_is_the_installed_package_s() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"badgateway {metadata.version('badgateway')}"


@pytest.mark.parametrize(("host", "other"), [("127.0.0.1", "::1"), ("::1", "127.0.0.1")])
async def test_serve_listens_on_the_host_it_is_given_only(
    tmp_path: Path, slack_api: SlackStandIn, host: str, other: str
) -> None:
    port = free_port()
    env = _clean_env(
        tmp_path,
        SLACK_BOT_TOKEN="xoxb-1",
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack_api.base_url,
        PORT=str(port),
    )
    argv = [sys.executable, "-m", "badgateway.bot.cli", "serve", "--host", host]
    with running(argv, tmp_path / "serve.log", env=env, cwd=str(tmp_path)) as serve:
        shown = f"[{host}]" if ":" in host else host
        await serve.until_ok(f"http://{shown}:{port}/healthz")
        with pytest.raises(OSError):
            socket.create_connection((other, port), timeout=1).close()
        assert f"listening on {host}:{port}" in serve.output()
