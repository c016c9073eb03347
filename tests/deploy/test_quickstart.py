"""scripts/quickstart recovers from a half-made .venv and still ends in the demo's verdict.

Runs the real script on a copy of the checkout: it pip-installs badgateway from the package
index into a fresh .venv (pip's cache makes that seconds) and runs the demo (nginx in front
of a stopped app).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab import REPO


def _copy_checkout(dest: Path) -> None:
    """The files git would hand a new user: tracked ones, and new ones not ignored."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source, target = REPO / name, dest / name
        if source.is_symlink():  # badgateway/bot -> ../bot: what the package is built from
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _half_made_by_a_failed_venv(venv: Path) -> None:
    # What `python3 -m venv` leaves on Debian without python3-venv: a python, no pip.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)


def _empty_bin(venv: Path) -> None:
    (venv / "bin").mkdir(parents=True)


@pytest.mark.parametrize("break_venv", [_half_made_by_a_failed_venv, _empty_bin])
def test_quickstart_replaces_a_half_made_venv_and_runs_the_demo(
    tmp_path: Path, break_venv: object
) -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (scripts/install-test-servers installs it)")
    repo = tmp_path / "badgateway"
    _copy_checkout(repo)
    assert callable(break_venv)
    break_venv(repo / ".venv")
    assert not (repo / ".venv/bin/pip").exists()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))
    }
    done = subprocess.run(
        ["bash", str(repo / "scripts/quickstart")],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "quickstart: replacing the half-made .venv" in done.stderr
    assert "quickstart: creating .venv" in done.stderr
    assert "quickstart: installing badgateway" in done.stderr
    assert "  pip: " in done.stderr  # pip's own progress lines, not minutes of silence
    assert "Verdict: upstream_refused" in done.stdout
    assert (repo / ".venv/bin/pip").exists()
    assert (repo / ".venv/bin/badgateway").exists()
