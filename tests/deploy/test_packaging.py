"""What `pip install .` and `pip install -e .` install: one top-level package, `badgateway`.

The wheel is built from a copy of the package's sources (as the Dockerfile's `COPY . .` sees
them, links included) and installed into a fresh venv with no index; the venv reaches the
dependencies already installed here through a .pth file (this interpreter's own
site-packages), so nothing is downloaded but what pip's build needs from its configured index.
The editable install is checked against what every worktree relies on: with
``PYTHONPATH=<checkout>`` that checkout's modules are imported, not the editable install's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.lab import REPO

PACKAGE_SOURCES = ("pyproject.toml", "README.md", "badgateway", "bot", "checks")


def _copy_sources(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in PACKAGE_SOURCES:
        source = REPO / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(source, dest / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(source, dest / name)
    return dest


def _run(argv: Sequence[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``argv`` with none of this process's PYTHONPATH (which points at this checkout)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env={**clean, "PIP_NO_INPUT": "1", **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _venv(path: Path) -> Path:
    """A fresh venv (no pip of its own: this interpreter's pip installs into it) that sees the
    dependencies installed here, and not this checkout."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)], cwd=path.parent)
    python = path / "bin" / "python"
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        cwd=path.parent,
    ).stdout.strip()
    ours = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    # A plain path line: the directories join sys.path after the venv's own site-packages and
    # their .pth files (this checkout's editable install among them) are not run.
    Path(site, "_deps_from_the_test_venv.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


def _pip(python: Path, *args: str, cwd: Path) -> None:
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "--disable-pip-version-check",
            *args,
        ],
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    source = _copy_sources(base / "src")
    out = base / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        cwd=base,
    )
    (built,) = out.glob("badgateway-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"badgateway"}
    assert {
        "badgateway/__init__.py",
        "badgateway/bot/cli.py",
        "badgateway/checks/runner.py",
        "badgateway/bot/slack/app.py",
        "badgateway/checks/logparse/__init__.py",
    } <= set(names)
    # every module of the two folders is in it, under its new name
    modules = {
        str(p.relative_to(REPO)) for d in ("bot", "checks") for p in (REPO / d).rglob("*.py")
    }
    assert {f"badgateway/{m}" for m in modules} <= set(names)
    dist_info = next(t for t in top if t.endswith(".dist-info"))
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "badgateway = badgateway.bot.cli:main" in entry_points


def test_the_installed_wheel_runs_without_the_checkout(wheel: Path, tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv")
    _pip(python, "install", "-q", "--no-deps", "--no-index", str(wheel), cwd=tmp_path)
    command = tmp_path / "venv" / "bin" / "badgateway"
    assert _run([str(command), "--version"], cwd=tmp_path).stdout.strip() == "badgateway 0.1.0"
    where = _run(
        [str(python), "-c", "import badgateway.bot.cli as m; print(m.__file__)"], cwd=tmp_path
    ).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where
    for generic in ("bot", "checks"):
        probe = f"import importlib.util as u; print(u.find_spec({generic!r}))"
        assert _run([str(python), "-c", probe], cwd=tmp_path).stdout.strip() == "None"
    # a whole diagnosis by the installed command: nginx in front of a stopped app
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        pytest.skip("the demo needs nginx (scripts/install-test-servers)")
    demo = _run([str(command), "demo", "--json"], cwd=tmp_path)
    assert json.loads(demo.stdout)["verdict"]["cause"] == "upstream_refused"


def test_an_editable_install_does_not_shadow_a_checkout_on_pythonpath(tmp_path: Path) -> None:
    """scripts/test and quickstart install with `pip install -e .`; every worktree then runs
    with PYTHONPATH=<worktree> against main's venv. sys.path is searched before the editable
    install's finder, so the worktree's badgateway/ (and through its links its bot/ and
    checks/) wins; without PYTHONPATH the editable install answers."""
    installed, worktree = _copy_sources(tmp_path / "main"), _copy_sources(tmp_path / "wt")
    python = _venv(tmp_path / "venv")
    _pip(python, "install", "-q", "--no-deps", "-e", str(installed), cwd=tmp_path)
    probe = (
        "import badgateway, badgateway.bot.cli, badgateway.checks.runner, badgateway.bot.slack;"
        "print(badgateway.__file__, badgateway.bot.cli.__file__,"
        " badgateway.checks.runner.__file__, badgateway.bot.slack.__file__)"
    )
    alone = _run([str(python), "-c", probe], cwd=tmp_path).stdout.split()
    assert all(Path(f).is_relative_to(installed) for f in alone), alone
    over = _run([str(python), "-c", probe], cwd=tmp_path, PYTHONPATH=str(worktree)).stdout.split()
    assert all(Path(f).is_relative_to(worktree) for f in over), over
