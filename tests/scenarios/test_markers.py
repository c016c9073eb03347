"""End to end: a deploy marker recorded before a failure appears in the verdict, and the
site's history shows the checks, the outage and the marker. Through the web process (a
token-guarded POST /events, `/502 shop` and `/502 history shop` from the Slack stand-in,
nginx in front of an app that is gone) and from a shell (`badgateway mark`, `diagnose` and
`history` on one state file)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import aiohttp

from badgateway.bot.alerts.events import EVENTS_PATH
from badgateway.bot.render.slack_blocks import block_kit_problems
from badgateway.checks.settings import Settings, Site
from tests.lab.fixtures_proxies import Proxy
from tests.lab.fixtures_slack import BotUnderTest
from tests.lab.fixtures_upstreams import Upstream

TOKEN = "events-scenario-token"
DEPLOY = {"site": "shop", "text": "deployed shop v1.2.3", "by": "CI", "kind": "deploy"}


async def post_event(bot: BotUnderTest, body: dict[str, Any]) -> tuple[int, Any]:
    url = bot.url.rsplit("/slack/", 1)[0] + EVENTS_PATH
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as response,
    ):
        return response.status, await response.json()


async def test_a_deploy_posted_before_the_failure_is_in_the_slack_verdict(
    slack_bot: Callable[..., Any],
    upstream: Callable[..., Upstream],
    nginx_proxy: Callable[..., Proxy],
) -> None:
    app = upstream("ok")
    proxy = nginx_proxy(app)
    site = Site(name="shop", url=proxy.url, upstreams=(app.address,))
    settings = Settings(
        allow_networks=(ip_network("127.0.0.0/8"),),
        sites=(site,),
        reload_attempts=1,
        timeout_s=2,
        diagnosis_budget_s=8,
    )
    bot: BotUnderTest = await slack_bot(settings, alerts_token=TOKEN)
    status, answer = await post_event(bot, DEPLOY)
    assert status == 201, answer
    assert (await post_event(bot, {**DEPLOY, "site": "blog"}))[0] == 422
    app.stop()  # the deploy broke the app: nginx's upstream refuses now

    assert (await bot.command("shop")).status == 200
    slack = bot.slack

    def verdicts() -> list[Any]:
        return [
            m for r in slack.roots() for m in slack.thread(r.ts) if m.text.startswith("verdict")
        ]

    await slack.wait_for(verdicts, what="the verdict")
    await bot.settle()
    [verdict] = verdicts()
    shown = json.dumps(verdict.blocks, ensure_ascii=False)
    assert "upstream_refused" in shown or "refus" in shown, shown
    assert "Just before it started: deployed shop v1.2.3 by CI at " in shown, shown
    assert "Roll back “deployed shop v1.2.3”" in shown, shown
    message = {"text": verdict.text, "blocks": verdict.blocks}
    assert block_kit_problems(message) == []

    answer = await bot.command("history shop")
    assert answer.status == 200
    history = answer.json()
    assert history["response_type"] == "ephemeral" and block_kit_problems(history) == []
    shown = json.dumps(history["blocks"], ensure_ascii=False)
    assert "History of shop: the last 24 h" in shown
    assert "[deploy] deployed shop v1.2.3 by CI at " in shown
    assert "Failing now: last good check never seen → first failure " in shown
    assert "upstream_refused" in shown and "still failing" in shown
    assert "Unknown site blog" in (await bot.command("history blog")).json()["text"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "badgateway.bot.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def test_a_marker_from_the_shell_is_in_the_next_diagnosis_and_the_history(
    tmp_path: Path,
) -> None:
    state, sites = tmp_path / "state.json", tmp_path / "sites.toml"
    with Upstream("ok") as app:
        sites.write_text(
            '[settings]\nallow_networks = ["127.0.0.0/8"]\ntimeout_s = 2\nreload_attempts = 1\n'
            f'[[site]]\nname = "shop"\nurl = "{app.url}"\n'
        )
        healthy = cli("diagnose", "shop", "--sites", str(sites), "--state", str(state), "--json")
        assert json.loads(healthy.stdout)["verdict"]["cause"] == "healthy", healthy.stderr
        where = ("--sites", str(sites), "--state", str(state))
        marked = cli("mark", "shop", "deployed shop v2", "--by", "ann", *where)
    assert marked.returncode == 0, marked.stderr
    assert marked.stdout.startswith("marked shop: deployed shop v2 by ann at ")
    unknown = cli("mark", "blog", "x", "--sites", str(sites), "--state", str(state))
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2,
        "badgateway: unknown site 'blog': not in the sites file",
    )
    failing = cli("diagnose", "shop", "--sites", str(sites), "--state", str(state), "--json")
    verdict = json.loads(failing.stdout)["verdict"]
    assert verdict["cause"] != "healthy"
    assert "Just before it started: deployed shop v2 by ann at " in verdict["summary"]
    assert "Last good check " in verdict["baseline"] and " → first failure " in verdict["baseline"]
    assert [f["code"] for f in verdict["evidence"]].count("marker") == 1

    shown = cli("history", "shop", *where)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("shop: the last 24 h, 2 checks")
    assert lines[1].startswith("status  ") and lines[1].count("▁") + lines[1].count("▅") >= 1
    assert "Failing now: last good check " in shown.stdout
    assert "  [change] deployed shop v2 by ann at " in shown.stdout
    document = json.loads(cli("history", "shop", "--json", "--hours", "1", *where).stdout)
    assert document["checks"] == 2 and [m["text"] for m in document["markers"]] == [
        "deployed shop v2"
    ]
    assert document["first_failure_at"] is not None and document["outages"][0]["ended_at"] is None
