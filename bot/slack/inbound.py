"""The door of ``/slack/events``: who is asking is checked before what they sent is read.

1. The raw bytes are read (at most ``MAX_BODY``) and Slack's signature is checked on them:
   v0 HMAC-SHA256 over ``v0:{timestamp}:{body}`` with the signing secret, a timestamp within
   5 minutes, compared in constant time as bytes. Nothing before this decodes the body, so
   a request without a valid signature is a 401 whatever its bytes are.
2. Only then is the body parsed, within limits: UTF-8 only, a form (slash commands, and
   interactivity's ``payload=`` JSON) or a JSON event, JSON through ``bot.bounded_json``.
3. The fields Bolt itself reads while building its context and routing (``user``,
   ``team``, ``authorizations``, ``event``, ``actions[0]``…) must have the types Slack
   sends, because Bolt indexes them unchecked. A button press that fails this is answered
   as Slack expects, an empty 200, and its presser is told why privately
   (``UnreadableInteraction``); anything else is a 400 with the reason.
4. Only requests one of the app's listeners takes reach Bolt (``unhandled``).

Every failure is one ``Answered`` with a status and a few words, never an exception from
a parser. What passes is handed to Bolt as canonical JSON with only the headers Bolt needs:
Bolt's own signature check is off (step 1 did it on the bytes Slack signed), and headers
such as ``X-Slack-Bolt-Lazy-Only`` that steer Bolt's internals never reach it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.payload_utils import (
    to_action,
    to_command,
    to_event,
    to_message,
    to_options,
    to_shortcut,
    to_step,
    to_view,
)

from badgateway.bot import bounded_json
from badgateway.bot.slack.payloads import LISTENED_ACTIONS, LISTENED_COMMANDS, LISTENED_EVENT

MAX_BODY = bounded_json.MAX_BYTES
BODY_TIMEOUT_S = 10
MAX_SKEW_S = 5 * 60  # Slack's advice: refuse timestamps further than this from now
MAX_FORM_FIELDS = 50  # a slash command has 14 fields, an interaction 1
MAX_CHALLENGE = 256  # url_verification's challenge is about 50 characters
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"
PASSED_HEADERS = ("X-Slack-Retry-Num", "X-Slack-Retry-Reason")

# Keys whose values Bolt's context builder reads as "an id or an object with an id", and the
# nested objects it descends into (slack_bolt.request.internals.extract_*).
_ID_OR_OBJECT = ("enterprise", "team", "user", "channel")
_LISTS_OF_OBJECTS = ("authorizations", "response_urls")
_NESTED = ("event", "message", "previous_message", "item", "assistant_thread")
_OBJECTS = (*_NESTED, "view", "function_data", "container")
_BOLT_EXTRACTORS = (
    to_options,
    to_shortcut,
    to_action,
    to_view,
    to_command,
    to_event,
    to_message,
    to_step,
)


class Answered(Exception):
    """The request is answered here, ``status`` with ``reason``, and goes no further."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class UnreadableInteraction(Answered):
    """An authenticated button press Bolt could not route. Slack's contract for interactions
    is an empty 200 within 3 s; ``problem`` goes to the presser privately."""

    def __init__(self, payload: dict[str, Any], problem: str) -> None:
        super().__init__(200, "")
        self.payload = payload
        self.problem = problem


# 1. Authenticate ----------------------------------------------------------------------------
def signature_ok(
    secret: str, timestamp: str | None, signature: str | None, raw: bytes, now: float
) -> bool:
    """Slack's v0 signature of ``raw``; header values as aiohttp gives them (str)."""
    if not secret or timestamp is None or signature is None:
        return False
    # int() of thousands of digits is slow or an error: a timestamp is ten digits today.
    if not (0 < len(timestamp) <= 12 and timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs(now - int(timestamp)) > MAX_SKEW_S:
        return False
    base = b"v0:" + timestamp.encode() + b":" + raw
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    try:
        # aiohttp keeps undecodable header bytes as surrogates: back to the bytes sent.
        given = signature.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected.encode(), given)


def _one(request: web.Request, name: str) -> str | None:
    values = request.headers.getall(name, [])
    return values[0] if len(values) == 1 else None


async def _raw_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Answered(413, f"body larger than {MAX_BODY} bytes")
    raw = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):  # Slack sends its few KiB at once
            while chunk := await request.content.read(MAX_BODY + 1 - len(raw)):
                raw += chunk
                if len(raw) > MAX_BODY:  # chunked bodies announce no length
                    raise Answered(413, f"body larger than {MAX_BODY} bytes")
    except TimeoutError:
        raise Answered(408, f"the body did not arrive within {BODY_TIMEOUT_S} s") from None
    except (HttpProcessingError, ConnectionError):  # broken chunking, the client went away
        raise Answered(400, "the body could not be read") from None
    return bytes(raw)


# 2. Parse -----------------------------------------------------------------------------------
def _media_type(header: str) -> tuple[str, str | None]:
    """("application/json", "utf-8") from ``application/json; charset=utf-8``."""
    media, *params = header.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return media.strip().lower(), charset


def _json_object(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        parsed = bounded_json.loads(data)
    except bounded_json.JsonRejected as exc:
        raise Answered(400, f"{what}: {exc}") from None
    if not isinstance(parsed, dict):
        raise Answered(400, f"{what}: expected a JSON object")
    return parsed


def _form(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
        )
    except UnicodeDecodeError:  # raw bytes, or %-escapes, that are not UTF-8
        raise Answered(400, "form body: not UTF-8") from None
    except ValueError:  # more fields than max_num_fields
        raise Answered(400, f"form body: more than {MAX_FORM_FIELDS} fields") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise Answered(400, "form body: a field is given twice")
    if "payload" in fields:  # interactivity: the whole payload is JSON in one field
        return _json_object(fields["payload"], "payload")
    return fields


def parse(raw: bytes, content_type: str) -> dict[str, Any]:
    """The body as Slack's payload (a form's fields, or its ``payload``, or the JSON)."""
    media, charset = _media_type(content_type)
    if charset not in (None, "utf-8", "utf8"):
        raise Answered(415, "charset must be utf-8")
    if media == JSON:
        return _json_object(raw, "JSON body")
    if media == FORM:
        return _form(raw)
    raise Answered(415, f"expected {FORM} or {JSON}")


# 3. Shapes Bolt relies on -------------------------------------------------------------------
def envelope_problem(body: Mapping[str, Any], where: str = "") -> str | None:
    """What in ``body`` Bolt's context builder would trip over, or None."""
    for key in _ID_OR_OBJECT:
        value = body.get(key)
        if value is not None and not isinstance(value, str | dict):
            return f"{where}{key} is neither an id nor an object"
    for key in _LISTS_OF_OBJECTS:  # Bolt takes len() of response_urls when the key is there
        value = body.get(key)
        if (value is not None or key in body) and not (
            isinstance(value, list) and all(isinstance(item, dict) for item in value)
        ):
            return f"{where}{key} is not a list of objects"
    for key in _OBJECTS:  # Bolt reads body.get("event", {}).get(…): a null event breaks it
        value = body.get(key)
        if (value is not None or key in body) and not isinstance(value, dict):
            return f"{where}{key} is not an object"
    nested = [(key, body.get(key)) for key in _NESTED]
    authorizations = body.get("authorizations")
    if authorizations:
        nested.append(("authorizations[0]", authorizations[0]))
    for key, value in nested:
        if isinstance(value, dict):
            problem = envelope_problem(value, f"{where}{key}.")
            if problem:
                return problem
    if body.get("type") == "url_verification":
        challenge = body.get("challenge")
        if not isinstance(challenge, str) or not 0 < len(challenge) <= MAX_CHALLENGE:
            return "challenge is missing or not text"
    return None


def routing_problem(body: Mapping[str, Any]) -> str | None:
    """What Bolt's routing would raise on in the requests the app takes: it matches
    ``command`` with a regular expression and, for every listener and middleware call,
    indexes ``actions[0]`` and ``event["type"]`` unchecked (slack_bolt's payload_utils)."""
    if "command" in body and not isinstance(body["command"], str):
        return "command is not text"
    kind = body.get("type")
    if kind == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list):
            return "actions is missing or not a list"
        if not actions:
            return "actions is empty"
        first = actions[0]
        if not (isinstance(first, dict) and isinstance(first.get("action_id"), str)):
            return "actions[0] has no action_id"
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event has no type"
    if kind == "block_suggestion" and not isinstance(body.get("action_id"), str):
        return "action_id is missing or not text"
    return None


def unhandled(body: Mapping[str, Any]) -> Answered | None:
    """The answer to a request none of the app's listeners takes, or None when one does.
    Bolt's own path for those builds a log message by indexing the payload unchecked, so
    they stop here: interactions and events Slack would deliver are acknowledged (its
    contract for both) and ignored, anything else is a 400. Run after routing_problem."""
    if body.get("ssl_check") == "1" or body.get("type") == "url_verification":
        return None  # Bolt's own middleware answers these
    ignored = Answered(200, "")
    if "command" in body:
        listened = LISTENED_COMMANDS.search(body["command"])
        return None if listened else Answered(400, "not a slash command")
    kind = body.get("type")
    if kind == "block_actions":
        return None if LISTENED_ACTIONS.search(body["actions"][0]["action_id"]) else ignored
    if kind == "event_callback":
        return None if body["event"]["type"] == LISTENED_EVENT else ignored
    if kind == "block_suggestion":  # a menu's options as the user types
        return None if LISTENED_ACTIONS.search(body["action_id"]) else ignored
    return Answered(400, "not a request this app handles")


def _bolt_request(body: dict[str, Any], request: web.Request) -> AsyncBoltRequest:
    headers = {"Content-Type": JSON}
    for name in PASSED_HEADERS:
        value = _one(request, name)
        if value is not None and value.isascii() and len(value) <= 64:
            headers[name] = value
    try:
        bolt_request = AsyncBoltRequest(body=json.dumps(body), headers=headers)  # type: ignore[arg-type]
        for extract in _BOLT_EXTRACTORS:  # what Bolt computes for every listener call
            extract(bolt_request.body)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
        # The checks above cover what Bolt reads today; a newer Bolt may read more.
        raise Answered(400, f"payload fields of unexpected types ({type(exc).__name__})") from None
    return bolt_request


async def read_request(request: web.Request, secret: str) -> AsyncBoltRequest:
    """The authenticated, parsed request for Bolt; raises Answered."""
    raw = await _raw_body(request)
    timestamp, signature = _one(request, TIMESTAMP_HEADER), _one(request, SIGNATURE_HEADER)
    if not signature_ok(secret, timestamp, signature, raw, time.time()):
        raise Answered(401, "invalid or missing Slack signature")
    body = parse(raw, request.headers.get("Content-Type", ""))
    problem = envelope_problem(body) or routing_problem(body)
    if problem and body.get("type") == "block_actions":
        raise UnreadableInteraction(body, problem)
    if problem:
        raise Answered(400, problem)
    answer = unhandled(body)
    if answer is not None:
        raise answer
    return _bolt_request(body, request)
