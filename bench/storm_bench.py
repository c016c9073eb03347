"""Storm benchmark: N sites (default 200) behind one real nginx fail at once; one process
(the alerting side and the diagnoses, as one worker runs them) accounts for every site on the
grouped alert, against the Slack stand-in enforcing Slack's documented rate limits.

Prints the time from the storm's root to every site's cause on it, the posts and updates
Slack accepted, the 429s (and any retried before their Retry-After), and the process's peak
memory. Loopback only; every server is stopped at the end.

    .venv/bin/python bench/storm_bench.py --sites 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis

from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.alerts.notifier import SlackNotifier
from badgateway.bot.alerts.sink import IncidentVerdicts
from badgateway.bot.alerts.store import IncidentStore
from badgateway.bot.pipeline import InProcessCarrier
from badgateway.bot.slack.sink import SlackSink
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState, open_store
from badgateway.checks.settings import LogSource, Site
from tests.lab.alerts import CHANNEL, FAST, bot_config, lab_settings, probe, shown
from tests.lab.fixtures_redis import RedisServer
from tests.lab.fixtures_slack import SlackStandIn
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.shared_nginx import running_shared_nginx
from tests.lab.slack_limits import SlackLimits

KINDS = ("refused", "garbage", "close_mid_response")


async def bench(sites_n: int, directory: Path) -> dict[str, Any]:
    server = RedisServer(directory / "redis")
    (directory / "redis").mkdir()
    server.start()
    apps = {kind: Upstream(kind).start() for kind in KINDS}
    slack = SlackStandIn()
    await slack.start()
    slack.limits = SlackLimits()
    names = [f"site{n:03d}" for n in range(sites_n)]
    behind = {name: KINDS[0 if n % 10 else 1 if n % 20 else 2] for n, name in enumerate(names)}
    (directory / "nginx").mkdir()
    redis = Redis.from_url(server.url, decode_responses=True)
    try:
        with running_shared_nginx(
            directory / "nginx", {name: apps[behind[name]].address for name in names}
        ) as nginx:
            logs = (LogSource(str(nginx.error_log)),)
            sites = [
                Site(name, nginx.url(name), upstreams=(apps[behind[name]].address,), logs=logs)
                for name in names
            ]
            settings = lab_settings(*sites, budget_s=6.0)
            client = make_web_client(bot_config(slack))
            state = BotState(open_store(server.url))
            incidents = Incidents(IncidentStore(redis), SlackNotifier(client), settings, FAST)
            sink = IncidentVerdicts(SlackSink(client, state), incidents)
            carrier = InProcessCarrier(settings, sink)
            incidents.posts.carrier = carrier
            for _ in range(2):
                await asyncio.gather(*(probe(incidents, site) for site in sites))
            started = time.monotonic()
            await incidents.flush(force=True)
            [root] = slack.roots(CHANNEL)
            goal = f"*Diagnosed:* {sites_n} of {sites_n}"
            while goal not in shown(slack.message(root.ts)):
                if time.monotonic() - started > 300:
                    raise TimeoutError("the storm was not accounted for in 300 s")
                await asyncio.sleep(0.05)
            took = time.monotonic() - started
            await carrier.drain()
            await incidents.close()
            await state.store.close()
    finally:
        await redis.aclose()
        await slack.stop()
        for app in apps.values():
            app.stop()
        server.stop()
    limits = slack.limits
    return {
        "sites": sites_n,
        "processes": 1,
        "accounted_for_s": round(took, 1),
        "posts": len(slack.calls_of("chat.postMessage", ok_only=True)),
        "updates": len(slack.calls_of("chat.update", ok_only=True)),
        "refused_429": limits.refused,
        "unhonoured_429": limits.unhonoured,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=200, help="sites failing at once (≤ 500)")
    args = parser.parse_args()
    sites_n = max(5, min(500, args.sites))
    with tempfile.TemporaryDirectory(prefix="bgw-storm-") as tmp:
        result = asyncio.run(bench(sites_n, Path(tmp)))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
