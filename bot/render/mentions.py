"""Slack ids and the mentions built from them: ``<@U…>`` only from an id of Slack's shape.

A mention is mrkdwn that pings someone, so it is built only from a value that is an id;
anything else (a forged ``user.id`` of ``<!here>``, an empty string) is shown as escaped
text and cannot ping, link or format. Every place that writes ``<@…>`` or ``<#…>`` goes
through ``user_mention`` / ``channel_mention``; payload validation (bot.slack.payloads) uses
the same shapes, so an id that passed there renders as a mention here.
"""

from __future__ import annotations

import re

# Users are U… (W… on Enterprise Grid; B… is a bot's id, harmless in a mention). Channels are
# C… (public, and private ones created lately), G… (older private channels and group DMs) and
# D… (direct messages). Slack's ids are 9 to 11 characters today; 32 leaves room to grow.
USER_ID = re.compile(r"[UWB][A-Z0-9]{1,31}")
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{1,31}")


def is_user_id(value: object) -> bool:
    return isinstance(value, str) and USER_ID.fullmatch(value) is not None


def is_channel_id(value: object) -> bool:
    return isinstance(value, str) and CHANNEL_ID.fullmatch(value) is not None


def escape_mrkdwn(text: str) -> str:
    """The three characters Slack's mrkdwn asks to escape; what is left cannot be a token."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def user_mention(user: object) -> str:
    """``<@U…>`` for a user id; anything else as escaped text."""
    return f"<@{user}>" if is_user_id(user) else escape_mrkdwn(str(user))


def channel_mention(channel: object) -> str:
    """``<#C…>`` for a channel id; anything else as escaped text."""
    return f"<#{channel}>" if is_channel_id(channel) else escape_mrkdwn(str(channel))
