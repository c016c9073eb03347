"""bot.slack.root_updates: the spacing and budget of root updates follow the workspace's limits."""

from __future__ import annotations

import pytest

from bot.config import BotConfig
from bot.slack.root_updates import PER_ROOT_S, WORKSPACE_PER_MINUTE, RootUpdates
from bot.slack_client import make_web_client

pytestmark = pytest.mark.slack_limits  # Slack's pace as the bot keeps it (not lifted)


@pytest.mark.parametrize("scale", [1.0, 4.0, 0.5])
async def test_updates_keep_the_pace_of_the_clients_rate_scale(scale: float) -> None:
    client = make_web_client(BotConfig(slack_bot_token="xoxb-t", slack_rate_scale=scale))
    roots = RootUpdates(client)
    assert roots.per_root_s == pytest.approx(PER_ROOT_S / scale)
    assert roots.budget.rate == pytest.approx(WORKSPACE_PER_MINUTE * scale / 60.0)


async def test_a_given_spacing_wins_over_the_scale() -> None:
    client = make_web_client(BotConfig(slack_bot_token="xoxb-t", slack_rate_scale=4.0))
    assert RootUpdates(client, per_root_s=0.0, per_minute=600.0).per_root_s == 0.0
