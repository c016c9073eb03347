"""The alert webhook behind a real Alertmanager 0.25 (tests/lab/alertmanager.py): alerts go
in through its API, it groups them by site and notifies the bot every half second or so, as
it does in production with longer intervals. State in a real redis-server, Slack the stand-in,
the diagnosis recorded (tested elsewhere)."""

from __future__ import annotations

from tests.lab.alertmanager import Alertmanager, notifications
from tests.lab.alerts import Bot, until
from tests.lab.fixtures_slack import SlackStandIn


def probe(name: str) -> dict[str, str]:
    """A blackbox_exporter style alert of shop's, one per probe module."""
    return {"alertname": name, "job": "blackbox", "site": "shop", "instance": "http://shop/"}


async def test_repeated_group_notifications_post_nothing_new(
    alertmanager: Alertmanager, bot: Bot, slack_api: SlackStandIn
) -> None:
    await alertmanager.fire(
        (probe("ProbeFailed"), "shop fails its HTTP probe"),
        (probe("ProbeHTTPStatus"), "shop answers 502"),
    )
    await until(lambda: len(slack_api.roots()) == 1, within_s=10, what="the alert")
    root = slack_api.roots()[0]
    await until(lambda: len(bot.carrier.requests) == 1, within_s=5, what="the diagnosis")
    # One more notification of the group first: under load the first one's root update can
    # still be on its way when the diagnosis is recorded; counted from here, nothing may change.
    await notifications(bot, len(bot.answered()) + 1)
    seen = len(bot.answered())
    posts, changes = len(slack_api.messages), len(slack_api.calls_of("chat.update"))

    await notifications(bot, seen + 3)  # the same group, three times more
    assert all(r.status == 202 for r in bot.answered())
    assert all(r.answer["accepted"] == 2 for r in bot.answered()[seen:])
    assert len(slack_api.messages) == posts and slack_api.thread(root.ts) == []
    assert len(slack_api.calls_of("chat.update")) == changes
    text = slack_api.message(root.ts).text
    assert "*Alerts firing:* 2 of 2" in text
    assert "shop fails its HTTP probe" in text and "shop answers 502" in text
    assert len(bot.carrier.requests) == 1


async def test_a_partial_resolve_leaves_it_open_until_the_last_alert_resolves(
    alertmanager: Alertmanager, bot: Bot, slack_api: SlackStandIn
) -> None:
    names = ("ProbeFailed", "ProbeHTTPStatus", "ProbeSSLExpiry", "ProbeSlow")
    await alertmanager.fire(*((probe(name), f"{name} on shop") for name in names))
    await until(
        lambda: any("4 of 4" in m.text for m in slack_api.roots()), within_s=10, what="4 alerts"
    )
    root = slack_api.roots()[0]

    await alertmanager.resolve(probe("ProbeSlow"))
    await until(lambda: len(slack_api.thread(root.ts)) == 1, within_s=5, what="the note")
    assert slack_api.thread(root.ts)[0].text == (
        ":large_green_circle: Alert resolved (alertmanager): ProbeSlow on shop — 3 still firing"
    )
    await notifications(bot, len(bot.answered()) + 2)  # and the group comes again
    assert len(slack_api.thread(root.ts)) == 1
    assert [i.site for i in await bot.incidents.list_open()] == ["shop"]
    assert "*Alerts firing:* 3 of 4" in slack_api.message(root.ts).text

    await alertmanager.resolve(*(probe(name) for name in names[:3]))
    await until(
        lambda: ":white_check_mark: *shop* resolved" in slack_api.message(root.ts).text,
        within_s=5,
        what="the incident resolved",
    )
    assert await bot.incidents.list_open() == []
    assert "its last alertmanager alert resolved" in slack_api.thread(root.ts)[-1].text
    assert all(r.status == 202 for r in bot.answered())


async def test_an_unmappable_alert_beside_a_mappable_one(
    alertmanager: Alertmanager, bot: Bot, slack_api: SlackStandIn
) -> None:
    # Neither has a site label, so group_by: [site] puts them in one group. The blackbox one
    # names shop by its instance URL (shop's scheme, address and port).
    await alertmanager.fire(
        ({"alertname": "NodeDown", "instance": "node1:9100"}, "node1 down"),
        (
            {
                "alertname": "ProbeFailed",
                "job": "blackbox",
                "instance": "http://127.0.0.1:9/health",
            },
            "the /health probe fails",
        ),
    )
    await until(lambda: len(slack_api.roots()) == 1, within_s=10, what="the alert")
    root = slack_api.roots()[0]
    assert root.channel == "C0SHOP" and "the /health probe fails" in root.text

    await notifications(bot, len(bot.answered()) + 2)
    answers = [r.answer for r in bot.answered()]
    assert all(a["accepted"] == 1 and len(a["skipped"]) == 1 for a in answers), answers
    assert {a["alerts"][0]["site"] for a in answers} == {"shop"}
    reasons = {a["skipped"][0]["reason"].split(": ", 1)[1] for a in answers}
    assert reasons == {"no 'site' label and no URL in 'url' or 'instance'"}
    # Every notification taken: Alertmanager counts no failure, so it retries nothing.
    assert all(r.status == 202 for r in bot.answered())
    assert await alertmanager.metric("alertmanager_notifications_total") >= 3
    assert await alertmanager.metric("alertmanager_notifications_failed_total") == 0
    assert len(slack_api.roots()) == 1 and slack_api.thread(root.ts) == []
