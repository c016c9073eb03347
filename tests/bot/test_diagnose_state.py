"""`badgateway diagnose` run twice from a shell: the second run says what changed since the
first, through the state file (--state FILE, the $XDG_STATE_HOME default, --no-state); a
corrupt state file is one warning line, never a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.lab.fixtures_upstreams import Upstream


def diagnose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "badgateway.bot.cli", "diagnose", "shop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def sites_file(tmp_path: Path, url: str) -> str:
    sites = tmp_path / "sites.toml"
    sites.write_text(
        '[settings]\nallow_networks = ["127.0.0.0/8"]\ntimeout_s = 2\nreload_attempts = 1\n'
        f'[[site]]\nname = "shop"\nurl = "{url}"\n'
    )
    return str(sites)


def verdict(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return dict(document["verdict"])


def test_the_second_run_names_what_changed_since_the_first(tmp_path: Path) -> None:
    state = tmp_path / "runs.json"
    with Upstream("ok") as app:
        sites = sites_file(tmp_path, app.url)
        first = verdict(diagnose("--sites", sites, "--state", str(state), "--json"))
    assert first["cause"] == "healthy" and state.exists()

    # The app is gone: its port refuses now.
    second = verdict(diagnose("--sites", sites, "--state", str(state), "--json"))
    assert second["cause"] == "unreachable"
    [change] = [c for c in second["changes"] if c["fact"] == f"edge@{app.address}"]
    assert (change["before"], change["now"], change["at_failing_layer"]) == (
        "open",
        "refused",
        True,
    )
    assert second["baseline"].startswith("Compared with the last healthy check, at ")

    shown = diagnose("--sites", sites, "--state", str(state))  # as a person reads it
    assert shown.returncode == 0, shown.stderr
    assert "What changed:" in shown.stdout
    assert f"{app.address} accepts connections at " not in shown.stdout
    assert f"{app.address} answered at " in shown.stdout
    kept = json.loads(state.read_text())
    assert kept["version"] == 1 and len(kept["targets"]["shop"]["recent"]) == 3
    assert kept["targets"]["shop"]["last_good"]["healthy"] is True
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".state-")] == []


def test_a_corrupt_state_file_is_one_warning_line_and_is_replaced(tmp_path: Path) -> None:
    state = tmp_path / "runs.json"
    state.write_text('{"version": 1, "targets": {"shop": ')  # cut off mid-write elsewhere
    sites = sites_file(tmp_path, "http://127.0.0.1:9/")
    done = diagnose("--sites", sites, "--state", str(state), "--json")
    assert verdict(done)["baseline"].startswith("shop has not been seen healthy before")
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"badgateway: warning: state file {state} is not JSON")
    assert json.loads(state.read_text())["targets"]["shop"]["recent"][0]["cause"] != "healthy"


def test_the_default_state_file_and_no_state(tmp_path: Path) -> None:
    default = Path(os.environ["XDG_STATE_HOME"]) / "badgateway" / "state.json"
    sites = sites_file(tmp_path, "http://127.0.0.1:9/")
    verdict(diagnose("--sites", sites, "--no-state", "--json"))
    assert not default.exists()
    verdict(diagnose("--sites", sites, "--json"))
    assert json.loads(default.read_text())["targets"]["shop"]["recent"]
