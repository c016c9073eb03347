"""Vantage workers: `badgateway worker --vantage PLACE` takes the parts for its place only,
with Redis alone (no Slack token, no sink), resolving with its own view; the step is
assembled and delivered by a default worker; a place whose worker is away or dies is named
and never waited for without bound; `status` lists the places; `diagnose --from` refuses
what it cannot do in one line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from badgateway.bot import cli
from badgateway.bot.config import ConfigError, load_config
from badgateway.checks.settings import load_settings
from tests.lab import REPO
from tests.lab.fixtures_redis import LAB_QUEUE_ENV, LabWorker, QueueLab, step_calls
from tests.lab.place_steps import install_place_step
from tests.lab.process import ManagedProcess
from tests.lab.slack_limits import UNLIMITED_ENV

CENTRAL_ENV = {"BADGATEWAY_SINK": "tests.lab.place_steps:places_sink"}


def _use_places(lab: QueueLab, *places: str) -> None:
    """The lab's site "shop" probed from ``places`` (the sites file's resolvers are a
    central one that no vantage may use)."""
    install_place_step()
    listed = ", ".join(f'"{p}"' for p in places)
    lab.sites_path.write_text(
        "[settings]\n"
        'allow_networks = ["127.0.0.0/8"]\n'
        'resolvers = ["127.0.0.1:53"]\n'
        "timeout_s = 3\ndiagnosis_budget_s = 6\n"
        f"vantages = [{listed}]\n\n"
        f'[[site]]\nname = "shop"\nurl = "{lab.http.url(0)}"\n',
        encoding="utf-8",
    )
    lab.settings = load_settings(lab.sites_path)


def _cli_env(lab: QueueLab, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SLACK_BOT_TOKEN", "BADGATEWAY_SINK", "REDIS_URL")
    }
    return {
        **env,
        **LAB_QUEUE_ENV,
        **UNLIMITED_ENV,
        "PYTHONPATH": str(REPO),
        "BADGATEWAY_SITES": str(lab.sites_path),
        "REDIS_URL": lab.redis_server.url,
        **extra,
    }


def start_vantage(
    lab: QueueLab, place: str, name: str, env: dict[str, str] | None = None
) -> LabWorker:
    """A vantage worker process with no Slack token and no sink: Redis only."""
    argv = [sys.executable, "-m", "tests.lab.place_steps", "worker", "--vantage", place]
    log = lab.directory / f"vantage-{name}-{len(lab.workers)}.log"
    process = ManagedProcess(
        argv, log, env=_cli_env(lab, BADGATEWAY_WORKER_NAME=name, **(env or {})), cwd=str(REPO)
    )
    worker = LabWorker(name, f"probe@{place}", process)
    lab.workers.append(worker)
    lab.wait_worker_ready(worker)
    return worker


def _messages(calls: list[dict[str, Any]], request_id: str) -> list[str]:
    [call] = [c for c in calls if c["kind"] == "step" and c["id"] == request_id]
    return list(call["messages"])


async def test_each_place_is_probed_by_its_own_worker_and_delivered_by_a_default_one(
    queue_lab: QueueLab,
) -> None:
    _use_places(queue_lab, "eu-west", "us-east")
    queue_lab.start_worker("central", env=CENTRAL_ENV)
    start_vantage(queue_lab, "eu-west", "v-eu", {"BADGATEWAY_VANTAGE_RESOLVERS": "127.0.0.1:5353"})
    request = await queue_lab.submit("shop", ["lab_place"])

    await asyncio.sleep(1.0)  # eu-west's part is in; us-east's waits for its worker
    assert queue_lab.queued("probe@us-east") == 1
    assert not [c for c in queue_lab.calls() if c["id"] == request.id]

    start_vantage(queue_lab, "us-east", "v-us")
    calls = await queue_lab.wait_concluded([request.id], within_s=15)
    assert step_calls(calls) == {(request.id, "lab_place"): 1}
    assert step_calls(calls, "verdict") == {(request.id, ""): 1}
    # Each place by its own worker, with its own view of DNS (never the sites file's),
    # and the step shown by the one worker that holds a sink.
    assert _messages(calls, request.id) == [
        "eu-west by v-eu resolving with 127.0.0.1:5353: HTTP 200 from 127.0.0.1",
        "us-east by v-us resolving with the system: HTTP 200 from 127.0.0.1",
    ]
    assert {c["worker"] for c in calls if c["id"] == request.id} == {"central"}

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "badgateway.bot.cli", "status", "--json"],
        env=_cli_env(queue_lab),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    status = json.loads(done.stdout)
    assert status["places"] == {"eu-west": ["v-eu"], "us-east": ["v-us"]}
    assert status["workers"]["v-eu"]["vantage"] == "eu-west"
    assert status["workers"]["central"]["vantage"] is None


async def test_a_place_without_a_worker_is_named_and_the_verdict_still_comes(
    queue_lab: QueueLab,
) -> None:
    _use_places(queue_lab, "eu-west", "us-east")
    queue_lab.start_worker("central", env={**CENTRAL_ENV, "BADGATEWAY_QUEUE_HOST_WAIT_S": "2"})
    start_vantage(queue_lab, "eu-west", "v-eu")
    request = await queue_lab.submit("shop", ["lab_place"])
    calls = await queue_lab.wait_concluded([request.id], within_s=15)
    assert _messages(calls, request.id) == [
        "eu-west by v-eu resolving with the system: HTTP 200 from 127.0.0.1",
        "us-east missing: did not answer within 2 s; "
        "is `badgateway worker --vantage us-east` running?",
    ]
    assert step_calls(calls, "verdict") == {(request.id, ""): 1}
    assert queue_lab.queued("probe@us-east") == 0  # its part was taken back


async def test_a_vantage_worker_killed_mid_part_is_named_within_the_wait(
    queue_lab: QueueLab,
) -> None:
    """us-east's worker dies while its part waits for the site: the step comes after the
    host wait with eu-west's part and us-east named, and the verdict with it."""
    _use_places(queue_lab, "eu-west", "us-east")
    held = queue_lab.http.held_url(20)
    queue_lab.sites_path.write_text(
        queue_lab.sites_path.read_text().replace(queue_lab.http.url(0), held)
    )
    queue_lab.settings = load_settings(queue_lab.sites_path)
    queue_lab.start_worker("central", env={**CENTRAL_ENV, "BADGATEWAY_QUEUE_HOST_WAIT_S": "3"})
    start_vantage(queue_lab, "eu-west", "v-eu")
    us_east = start_vantage(queue_lab, "us-east", "v-us")
    request = await queue_lab.submit("shop", ["lab_place"])
    await asyncio.to_thread(queue_lab.http.wait_for_requests, 2, "/held/")
    us_east.kill()
    queue_lab.http.release()  # eu-west's request is answered; us-east's worker is gone
    calls = await queue_lab.wait_concluded([request.id], within_s=15)
    assert _messages(calls, request.id) == [
        "eu-west by v-eu resolving with the system: HTTP 200 from 127.0.0.1",
        "us-east missing: did not answer within 3 s; "
        "is `badgateway worker --vantage us-east` running?",
    ]
    assert step_calls(calls, "verdict") == {(request.id, ""): 1}


SITES = '[settings]\nvantages = ["eu-west", "us-east"]\n[[site]]\nname = "shop"\nurl = "http://127.0.0.2/"\n'


def _main(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> int:
    """`badgateway ARGS` in this process (each refusal comes before anything connects)."""
    sites = tmp_path / "sites.toml"
    sites.write_text(SITES, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # no .env but the test's
    for name, value in (("BADGATEWAY_SITES", str(sites)), ("REDIS_URL", redis_url)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    return cli.main(list(args))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("worker", "--vantage", "eu west"),
            "badgateway: --vantage 'eu west': a place is named like the sites file's vantages",
        ),
        (("worker", "--vantage", "here"), "badgateway: --vantage 'here': a place is named like"),
        (
            ("worker", "--vantage", "a" * 64),
            f"badgateway: --vantage '{'a' * 64}': a place is named like the sites file's "
            "vantages (\"eu-west\": letters, digits, . _ -, at most 63, not 'here')",
        ),
        (
            ("worker", "--vantage", "eu-west", "--queues", "default"),
            "badgateway: a vantage worker serves its place's probes only (it has no sink)",
        ),
        (("diagnose", "shop", "--from", "mars"), "badgateway: unknown place mars; the places"),
    ],
)
def test_bad_places_are_one_line_and_exit_2(
    args: tuple[str, ...],
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _main(args, tmp_path, monkeypatch, "redis://127.0.0.1:1/0") == 2
    err = capsys.readouterr().err
    assert err.startswith(says) and err.count("\n") == 1, err


def test_from_without_redis_says_why_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(("diagnose", "shop", "--from", "eu-west"), tmp_path, monkeypatch, "") == 2
    assert capsys.readouterr().err == (
        "badgateway: --from needs REDIS_URL: the places are reached through the queue\n"
    )


def test_vantage_resolvers_are_checked_when_read() -> None:
    env = {"BADGATEWAY_VANTAGE_RESOLVERS": " 10.0.0.2, 127.0.0.1:5353,[::1]:53 "}
    config = load_config(env, dotenv_path=None)
    assert config.vantage_resolvers == ("10.0.0.2", "127.0.0.1:5353", "[::1]:53")
    assert load_config({}, dotenv_path=None).vantage_resolvers == ()
    for bad in ("resolver.example", "10.0.0.2:0", "10.0.0.2:x"):
        with pytest.raises(ConfigError, match="BADGATEWAY_VANTAGE_RESOLVERS must be IP or"):
            load_config({"BADGATEWAY_VANTAGE_RESOLVERS": bad}, dotenv_path=None)
