"""The fields the bot reads from Slack's payloads, checked before any of them is used.

A handler acknowledges Slack first and works afterwards; an exception after the
acknowledgement makes Bolt replace it and wait out its timeout (Slack then shows the user
an error). So each handler turns the payload into one of the typed records below first, and
a payload that does not fit gets a private answer instead of a crash: ``PayloadProblem``
says in a few words which field was wrong.

Ids must have Slack's shapes (bot.render.mentions), timestamps Slack's ``1700000000.123456``
form, ``response_url`` must be an https URL on Slack's domains (or on the origin of
``SLACK_API_URL``, for a test stand-in of Slack), texts must be text of a sane length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from badgateway.bot.render.mentions import is_channel_id, is_user_id

# What the app's listeners take (bot.slack.app); the HTTP door answers anything else itself.
LISTENED_COMMANDS = re.compile(r"^/.+")  # the installer may rename the command; /502 by default
LISTENED_ACTIONS = re.compile(r"^bgw_")  # the verdict's buttons, a grouped alert's menu
LISTENED_EVENT = "app_mention"

TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")
EVENT_ID = re.compile(r"Ev[A-Za-z0-9]{1,62}")
MAX_COMMAND_TEXT = 4000  # what a user types after /502; Slack's own box holds about this
MAX_MESSAGE_TEXT = 40000  # Slack's limit for a message's text
MAX_NAME = 255  # action ids and channel names are far shorter in Slack
MAX_URL = 2048
SLACK_DOMAINS = ("slack.com", "slack-gov.com")  # response_url is hooks.slack.com (-gov: GovSlack)


_FROM_PLACES = re.compile(r"^(.*\S)\s+from(?:\s+(.*))?$", re.IGNORECASE | re.DOTALL)


def target_and_places(typed: str) -> tuple[str, list[str] | None]:
    """`/502 shop from eu-west,us-east` → ("shop", ["eu-west", "us-east"]): the target, and
    the places the asker limits the run to (commas or spaces between them); None when no
    ``from`` was typed, [] when nothing follows it."""
    match = _FROM_PLACES.match(typed.strip())
    if match is None:
        return typed.strip(), None
    places = [p for p in re.split(r"[,\s]+", match.group(2) or "") if p]
    return match.group(1), places


class PayloadProblem(ValueError):
    """A field the bot needs is missing or not what Slack sends; the message says which."""


@dataclass(frozen=True)
class SlashCommand:
    text: str
    user: str
    channel: str
    channel_name: str
    response_url: str


@dataclass(frozen=True)
class ButtonPress:
    action_id: str
    user: str
    channel: str
    channel_name: str
    root_ts: str  # the diagnosis thread the button belongs to
    response_url: str
    chosen: str = ""  # a menu's choice (its option's value); "" for a button


@dataclass(frozen=True)
class MenuTyping:
    """A block_suggestion: someone types in an external select; the app answers options."""

    action_id: str
    user: str
    channel: str
    root_ts: str  # the message the menu is on
    typed: str


@dataclass(frozen=True)
class Mention:
    text: str
    user: str
    channel: str
    ts: str
    thread_ts: str | None


@dataclass(frozen=True)
class PrivateRoute:
    """Where a private answer about a malformed payload can go, each part only if valid."""

    response_url: str | None
    user: str | None
    channel: str | None


# Single fields -----------------------------------------------------------------------------
def user_id(value: object, field: str) -> str:
    if not is_user_id(value):
        raise PayloadProblem(f"{field} is not a Slack user id")
    return str(value)


def channel_id(value: object, field: str) -> str:
    if not is_channel_id(value):
        raise PayloadProblem(f"{field} is not a Slack channel id")
    return str(value)


def timestamp(value: object, field: str) -> str:
    if not isinstance(value, str) or TS.fullmatch(value) is None:
        raise PayloadProblem(f"{field} is not a Slack message timestamp")
    return value


def text(value: object, field: str, limit: int, *, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise PayloadProblem(f"{field} is not text")
    if len(value) > limit:
        raise PayloadProblem(f"{field} is longer than {limit} characters")
    return value


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or ""), parts.port


def _slack_host(host: str) -> bool:
    return any(host == domain or host.endswith("." + domain) for domain in SLACK_DOMAINS)


def response_url(value: object, *, stand_in: str = "") -> str:
    """An https URL of Slack's (hooks.slack.com) to answer at, so that no payload makes the
    bot post anywhere else. ``stand_in``: a base URL (``SLACK_API_URL``) whose origin is
    accepted too, so a local stand-in of Slack, or a proxy in front of it, takes the answers."""
    if not isinstance(value, str) or not value:
        raise PayloadProblem("response_url is missing")
    # aiohttp refuses (with an exception) what is not plain ASCII without spaces or controls.
    if len(value) > MAX_URL or not value.isascii() or not value.isprintable() or " " in value:
        raise PayloadProblem("response_url is not a URL")
    try:
        parts = urlsplit(value)
        origin = (parts.scheme, parts.hostname or "", parts.port)
        allowed = _origin(stand_in) if stand_in else None
    except ValueError:  # "http://]/", a port that is not a number…
        raise PayloadProblem("response_url is not a URL") from None
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise PayloadProblem("response_url is not a URL")
    if (parts.scheme == "https" and _slack_host(parts.hostname)) or origin == allowed:
        return value
    raise PayloadProblem("response_url is not an https URL of Slack's")


def event_id(body: Mapping[str, Any]) -> str | None:
    """The Events API's id of an event, when it has Slack's shape (used to drop retries)."""
    value = body.get("event_id") if body.get("type") == "event_callback" else None
    return value if isinstance(value, str) and EVENT_ID.fullmatch(value) else None


def _object(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadProblem(f"{field} is missing or not an object")
    return value


# Whole payloads ------------------------------------------------------------------------------
def slash_command(fields: Mapping[str, Any], *, stand_in: str = "") -> SlashCommand:
    """The form fields of a slash command."""
    return SlashCommand(
        text=text(fields.get("text"), "text", MAX_COMMAND_TEXT),
        user=user_id(fields.get("user_id"), "user_id"),
        channel=channel_id(fields.get("channel_id"), "channel_id"),
        channel_name=text(fields.get("channel_name"), "channel_name", MAX_NAME),
        response_url=response_url(fields.get("response_url"), stand_in=stand_in),
    )


def button_press(body: Mapping[str, Any], *, stand_in: str = "") -> ButtonPress:
    """A block_actions payload: the first action, who pressed it, where, on which thread."""
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions:
        raise PayloadProblem("actions is empty")
    action = _object(actions[0], "actions[0]")
    action_id = text(action.get("action_id"), "action_id", MAX_NAME)
    if not action_id:
        raise PayloadProblem("action_id is missing")
    channel = _object(body.get("channel"), "channel")
    message = body.get("message") or {}
    if not isinstance(message, Mapping):
        raise PayloadProblem("message is not an object")
    # The verdict's buttons carry the root's ts as their value; older ones may not. A menu
    # carries its choice instead, and sits on the root itself.
    chosen = action.get("selected_option")
    chosen = _object(chosen, "selected_option") if chosen is not None else {}
    value = action.get("value") or message.get("thread_ts") or message.get("ts")
    return ButtonPress(
        action_id=action_id,
        user=user_id(_object(body.get("user"), "user").get("id"), "user.id"),
        channel=channel_id(channel.get("id"), "channel.id"),
        channel_name=text(channel.get("name"), "channel.name", MAX_NAME),
        root_ts=timestamp(value, "the button's message"),
        response_url=response_url(body.get("response_url"), stand_in=stand_in),
        chosen=text(chosen.get("value"), "selected_option.value", MAX_NAME),
    )


def menu_typing(body: Mapping[str, Any]) -> MenuTyping:
    """A block_suggestion payload: which menu, who types, on which message, what so far."""
    container = _object(body.get("container"), "container")
    return MenuTyping(
        action_id=text(body.get("action_id"), "action_id", MAX_NAME),
        user=user_id(_object(body.get("user"), "user").get("id"), "user.id"),
        channel=channel_id(_object(body.get("channel"), "channel").get("id"), "channel.id"),
        root_ts=timestamp(container.get("message_ts"), "container.message_ts"),
        typed=text(body.get("value"), "value", MAX_NAME),
    )


def app_mention(event: Mapping[str, Any]) -> Mention:
    """An app_mention event (the ``event`` object of the Events API's envelope)."""
    thread_ts = event.get("thread_ts")
    return Mention(
        text=text(event.get("text"), "text", MAX_MESSAGE_TEXT),
        user=user_id(event.get("user"), "user"),
        channel=channel_id(event.get("channel"), "channel"),
        ts=timestamp(event.get("ts"), "ts"),
        thread_ts=None if thread_ts is None else timestamp(thread_ts, "thread_ts"),
    )


def private_route(body: Mapping[str, Any], *, stand_in: str = "") -> PrivateRoute:
    """Where to tell the sender of a malformed payload what was wrong; never raises."""
    event = body.get("event")
    event = event if isinstance(event, Mapping) else {}
    user = body.get("user")
    channel = body.get("channel")
    candidates_user = [
        user.get("id") if isinstance(user, Mapping) else user,
        body.get("user_id"),
        event.get("user"),
    ]
    candidates_channel = [
        channel.get("id") if isinstance(channel, Mapping) else channel,
        body.get("channel_id"),
        event.get("channel"),
    ]
    try:
        url: str | None = response_url(body.get("response_url"), stand_in=stand_in)
    except PayloadProblem:
        url = None
    return PrivateRoute(
        response_url=url,
        user=next((str(u) for u in candidates_user if is_user_id(u)), None),
        channel=next((str(c) for c in candidates_channel if is_channel_id(c)), None),
    )
