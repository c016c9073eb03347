"""Many askers benchmark: `/502` for one failing site from N channels at once, under Slack's
rate limits (issue 11: fifty channels).

The real bot (Bolt over HTTP, in-process carrier, the engine's own checks) against the Web API
stand-in enforcing Slack's documented limits (tests/lab/slack_limits.py), and a loopback site
that answers 502. Prints the time until every thread is complete (every step reply and the
verdict) and until every root shows its verdict, the runs (distinct diagnosis ids behind the
replies), posts, root updates, 429s and 429s not honoured. Loopback only.

    .venv/bin/python -m bench.many_askers_bench --channels 50
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from badgateway.bot.assemble.web import build_web
from badgateway.bot.config import BotConfig
from badgateway.bot.slack.server import EVENTS_PATH
from badgateway.checks.settings import Settings
from badgateway.checks.steps import step_names
from tests.lab.fixtures_slack import SIGNING_SECRET, SlackSigner, SlackStandIn, sign
from tests.lab.process import serve_app
from tests.lab.slack_limits import SlackLimits


async def _bad_gateway(_request: web.Request) -> web.Response:
    return web.Response(status=502, text="<h1>502 Bad Gateway</h1>", headers={"Server": "nginx"})


async def run(channels: int) -> None:
    import aiohttp

    slack = SlackStandIn(limits=SlackLimits())
    await slack.start()
    site_app = web.Application()
    site_app.router.add_get("/{tail:.*}", _bad_gateway)
    site_runner, site_port = await serve_app(site_app)
    config = BotConfig(
        slack_bot_token="xoxb-bench",
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.base_url,
    )
    settings = Settings(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),), timeout_s=2)
    runtime = build_web(config, settings)
    bot_runner, bot_port = await serve_app(runtime.web_app())
    signer = SlackSigner(SIGNING_SECRET, slack.response_url)
    target = f"http://127.0.0.1:{site_port}/"
    names = [*step_names(), "verdict"]
    asked = [f"C0BENCH{n:03d}" for n in range(channels)]

    def complete() -> bool:
        roots = [r for c in asked for r in slack.roots(c)]
        return len(roots) == channels and all(
            [m.text.split(":")[0] for m in slack.thread(r.ts)] == names for r in roots
        )

    def roots_final() -> bool:
        return all("Verdict:" in str(r.blocks) for c in asked for r in slack.roots(c))

    async def ask(session: aiohttp.ClientSession, channel: str, n: int) -> None:
        body, content_type = signer.slash_command(target, channel=channel, user=f"U0B{n:06d}")
        headers = {"Content-Type": content_type, **sign(SIGNING_SECRET, body)}
        url = f"http://127.0.0.1:{bot_port}{EVENTS_PATH}"
        async with session.post(url, data=body.encode(), headers=headers) as response:
            await response.read()

    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(ask(session, c, n) for n, c in enumerate(asked)))
        threads_s = roots_s = None
        while time.monotonic() - started < 300 and roots_s is None:
            if threads_s is None and complete():
                threads_s = time.monotonic() - started
            if threads_s is not None and roots_final():
                roots_s = time.monotonic() - started
            await asyncio.sleep(0.05)
        tagged = [
            (m.channel, str(m.metadata["event_payload"]["key"]))
            for m in slack.messages
            if m.metadata
        ]
        keys = [key for _, key in tagged]
        runs = {k.split(":")[0] for k in keys if not k.startswith("root:")}
        posts = slack.calls_of("chat.postMessage")
        updates = slack.calls_of("chat.update")
        assert slack.limits is not None
        print(f"channels asking at once        {channels}")
        print(f"every thread complete after    {_s(threads_s)}")
        print(f"every root shows its verdict   {_s(roots_s)}")
        print(f"diagnosis runs                 {len(runs)}")
        print(f"messages posted                {len(slack.messages)}")
        refused_posts = sum(c.status == 429 for c in posts)
        refused_updates = sum(c.status == 429 for c in updates)
        print(f"chat.postMessage calls (429)   {len(posts)} ({refused_posts})")
        print(f"chat.update calls (429)        {len(updates)} ({refused_updates})")
        print(f"429s in all / not honoured     {slack.limits.refused} / {slack.limits.unhonoured}")
        print(f"duplicate posts                {len(tagged) - len(set(tagged))}")
    finally:
        await bot_runner.cleanup()
        await runtime.close()
        await site_runner.cleanup()
        await slack.stop()


def _s(seconds: float | None) -> str:
    return "not within 300 s" if seconds is None else f"{seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(max(1, min(args.channels, 500))))


if __name__ == "__main__":
    main()
