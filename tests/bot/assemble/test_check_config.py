"""`badgateway check-config`: the checks against real servers (BIND, Redis, the Slack
stand-in), and the command's lines and exit codes as CI sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from badgateway.bot.assemble.check_config import Check, exit_code, gather_checks
from badgateway.bot.config import BotConfig
from tests.lab import REPO
from tests.lab.certs import LabCerts
from tests.lab.fixtures_dns import DnsLab
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.process import free_port


def _sites(tmp_path: Path, settings: str, site: str) -> str:
    path = tmp_path / "sites.toml"
    path.write_text(
        f'[settings]\n{settings}\n[[site]]\nname = "www"\nurl = "http://www.test/"\n{site}'
    )
    return str(path)


def _by_name(checks: list[Check]) -> dict[str, list[Check]]:
    found: dict[str, list[Check]] = {}
    for check in checks:
        found.setdefault(check.name, []).append(check)
    return found


async def test_a_good_configuration_passes_every_check(
    tmp_path: Path,
    dns_lab: DnsLab,
    tls_certs: LabCerts,
    slack_api: SlackStandIn,
    redis_server: RedisServer,
) -> None:
    log = tmp_path / "error.log"
    log.write_text("")
    sites = _sites(
        tmp_path,
        f'resolvers = ["{dns_lab.primary}"]\nca_file = "{tls_certs.ca}"\n',
        f'channel = "#www"\nlogs = [{{ path = "{log}" }}, {{ path = "/gone", host = "web-9" }}]\n',
    )
    config = BotConfig(
        slack_bot_token="xoxb-1",
        slack_signing_secret="secret",
        slack_api_url=slack_api.base_url,
        redis_url=redis_server.url,
        sites_path=sites,
    )
    checks = await gather_checks(config, config.load_sites(), None)
    assert exit_code(checks) == 0
    assert [c for c in checks if c.status != "ok"] == []
    found = _by_name(checks)
    assert found["resolver"][0].detail.startswith(f"{dns_lab.primary}: OK for www.test in ")
    assert found["ca_file"][0].detail == f"{tls_certs.ca}: 1 CA certificate(s)"
    assert [c.detail for c in found["log"]] == [
        f"site 'www' {log}: readable",
        "site 'www' /gone: read on web-9 (its logs@web-9 worker)",
    ]
    assert found["alerts"][0].detail == "every site (1) has a channel"
    assert found["redis"][0].detail == "127.0.0.1 answers"
    assert found["slack"][0].detail == "token accepted: @badgateway in badgateway test"


async def test_each_broken_part_fails_its_own_line(
    tmp_path: Path, dns_lab: DnsLab, slack_api: SlackStandIn
) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    sites = _sites(
        tmp_path,
        f'resolvers = ["{dns_lab.primary}", "{dns_lab.dead}"]\nca_file = "{not_pem}"\n',
        f'logs = ["{tmp_path / "missing.log"}"]\n',  # and no channel for its alerts
    )
    slack_api.revoked_tokens.add("xoxb-revoked")
    config = BotConfig(
        slack_bot_token="xoxb-revoked",
        slack_api_url=slack_api.base_url,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        sites_path=sites,
    )
    checks = await gather_checks(config, config.load_sites(), None)
    assert exit_code(checks) == 1
    lines = [c.line() for c in checks if c.status != "ok"]
    assert lines[0] == (
        "warn  serve: `badgateway serve` would stop: "
        "SLACK_SIGNING_SECRET is not set (needed in HTTP mode)"
    )
    assert lines[1] == f"fail  resolver: {dns_lab.dead}: no answer in 2 s"
    assert lines[2].startswith(f"fail  ca_file: {not_pem}: not a PEM CA file (")
    assert lines[3] == (
        f"fail  log: site 'www' {tmp_path / 'missing.log'}: cannot read it here: "
        "No such file or directory"
    )
    assert lines[4] == (
        "fail  alerts: no 'channel' and no settings.default_channel for 'www': "
        "their alerts would go nowhere"
    )
    assert lines[5].startswith("fail  redis: cannot reach Redis at 127.0.0.1:")
    assert lines[6] == "fail  slack: Slack rejected SLACK_BOT_TOKEN (invalid_auth)"
    assert len(lines) == 7


async def test_slack_out_of_reach_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    """A CI runner or a worker's machine may not reach Slack; the token is then unchecked."""
    config = BotConfig(
        slack_bot_token="xoxb-1",
        slack_signing_secret="secret",
        slack_api_url=f"http://127.0.0.1:{free_port()}/api/",
    )
    checks = await gather_checks(config, config.load_sites(), None)
    assert exit_code(checks) == 0
    slack = _by_name(checks)["slack"][0]
    assert slack.status == "warn" and slack.detail.startswith("token not checked: cannot reach")


def _check_config(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BADGATEWAY_", "SLACK_"))}
    env.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "badgateway.bot.cli", "check-config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
        check=False,
    )


def test_the_command_exits_0_1_or_2_for_ci(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text("")
    good = _sites(tmp_path, "", f'logs = ["{log}"]\n')
    done = _check_config(tmp_path, "--sites", good)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[:2] == [
        "ok    settings: every setting in the environment and .env is valid",
        f"ok    sites file: {good}: 1 site(s)",
    ]
    document = json.loads(_check_config(tmp_path, "--sites", good, "--json").stdout)
    assert document["loaded"] is True and document["exit"] == 0
    assert {"name": "log", "status": "ok", "detail": f"site 'www' {log}: readable"} in document[
        "checks"
    ]

    log.unlink()
    failed = _check_config(tmp_path, "--sites", good)
    assert failed.returncode == 1
    assert f"fail  log: site 'www' {log}: cannot read it here" in failed.stdout

    broken = _sites(tmp_path, "timeout = 5", "")
    not_loaded = _check_config(tmp_path, "--sites", broken)
    assert not_loaded.returncode == 2 and not_loaded.stdout == ""
    assert not_loaded.stderr == (
        f"badgateway: sites file '{broken}': [settings]: unknown key 'timeout'; "
        "did you mean 'timeout_s'?\n"
    )
