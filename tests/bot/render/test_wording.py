"""bot.render.wording: the pieces every Slack message is written with."""

from __future__ import annotations

from badgateway.bot.render import wording


def test_escape_redacts_then_escapes_mrkdwn() -> None:
    assert wording.escape("<!here> & <@U1>") == "&lt;!here&gt; &amp; &lt;@U1&gt;"
    assert "xoxb-" not in wording.escape("token=xoxb-1234567890-abcdefghij")


def test_cut_at_most_and_duration() -> None:
    assert wording.cut("abcdef", 4) == "abc…" and wording.cut("abc", 4) == "abc"
    assert wording.at_most(["a", "b", "c"], 2) == ["a", "b", "…and 1 more"]
    assert wording.at_most(["a"], 2) == ["a"]
    assert [wording.duration(s) for s in (45, 720, 7500, 7200)] == [
        "45 s",
        "12 min",
        "2 h 5 min",
        "2 h",
    ]


def test_date_tokens_and_links() -> None:
    assert wording.slack_time(0) == "<!date^0^{time}|00:00 UTC>"
    assert wording.slack_date_time(0) == "<!date^0^{date_short_pretty} {time}|1970-01-01 00:00 UTC>"
    assert wording.thread_link("C1", "1.25") == "https://slack.com/archives/C1/p125"


def test_on_it_is_one_phrase_and_mentions_only_ids() -> None:
    assert wording.on_it("U0ALICE01") == "🙋 <@U0ALICE01> is on it"
    assert wording.on_it("<!here>") == "🙋 &lt;!here&gt; is on it"
