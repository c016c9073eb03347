"""`badgateway` as a user runs it: exit codes, stderr lines, the JSON document; `status` and
`worker` when Redis is out of reach or the worker could not post its results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab import REPO
from tests.lab.fixtures_redis import RedisServer
from tests.lab.process import free_port


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
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
