"""The alerting side built from the configuration: one ``Incidents`` per process.

The web process (webhooks, `/502 status`, buttons) and every worker (scheduled probes) each
build their own ``Incidents`` over the same Redis; they share nothing else.
"""

from __future__ import annotations

from redis.asyncio import Redis

from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.alerts.notifier import SlackNotifier
from badgateway.bot.alerts.store import IncidentStore
from badgateway.bot.config import BotConfig, ConfigError
from badgateway.bot.flights import ShowRun, SiteFlights
from badgateway.bot.history_store import RedisHistory
from badgateway.bot.pipeline import Carrier
from badgateway.bot.slack_client import make_web_client
from badgateway.bot.state import BotState
from badgateway.checks.settings import Settings


def build_incidents(
    config: BotConfig,
    settings: Settings,
    carrier: Carrier | None = None,
    *,
    state: BotState | None = None,
    show_run: ShowRun | None = None,
) -> Incidents:
    """Incidents over ``REDIS_URL``, posting with the bot token. Alerts need Redis: the
    state must outlive the process and be shared by the web process and the workers.
    With the Slack side's ``state`` an incident's diagnosis is the site's run that `/502`s
    share (bot.flights), and ``show_run`` catches its thread up with a run it joins."""
    if not config.redis_url:
        raise ConfigError("REDIS_URL is not set: automatic alerts keep their incidents in Redis")
    redis = Redis.from_url(config.redis_url, decode_responses=True)
    # Its posts keep the pace every process shares (bot.shared_pace).
    notifier = SlackNotifier(make_web_client(config, redis)) if config.slack_bot_token else None
    flights = None
    if state is not None and carrier is not None:
        flights = SiteFlights(state, carrier, config.share_window_s)
    return Incidents(
        IncidentStore(redis),
        notifier,
        settings,
        config.alert_policy,
        carrier,
        flights=flights,
        show_run=show_run,
        history=RedisHistory(redis, config.history),
    )
