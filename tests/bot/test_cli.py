"""`badgateway diagnose` as a user runs it: exit codes, stderr lines, the JSON document."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.process import free_port


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
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
