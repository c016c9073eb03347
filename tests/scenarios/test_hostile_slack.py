"""Hostile input on ``/slack/events``: the real app on loopback, the Slack stand-in, and
requests that are unsigned, forged, malformed, or signed but shaped as Slack never sends.

Properties every input must keep (``Surface.send`` checks them all):
- never a 5xx; an unsigned or forged request is a 401 and the bot does nothing for it;
- answered within Slack's 3 s;
- no traceback in the logs (Bolt's, aiohttp's or the bot's), also from the work done after
  the answer (the check waits for it);
- nothing that came from input is posted unescaped: every ``<…>`` token the bot sends to
  Slack (messages, updates, ephemerals, response_url posts, a command's ephemeral answer)
  is a mention of a valid id or a date, never ``<!here>``, ``<!channel>`` or a link.

The regression corpus (``CORPUS`` and the tests named after an input) holds the exact inputs
issue 9 lists, and those the properties found, each with the status and message it must get.
The Hypothesis tests use ``tests.hypothesis_profiles``: ``ci`` by default (200 examples each,
derandomized), ``pytest -p tests.hypothesis_profiles --hypothesis-profile=long`` for more.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import event, example, given
from hypothesis import strategies as st

import badgateway.bot.pipeline
import badgateway.checks.runner
import badgateway.checks.steps
from badgateway.bot.render.mentions import channel_mention, is_channel_id, is_user_id, user_mention
from badgateway.bot.slack import payloads
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Finding, Status, StepResult
from badgateway.checks.settings import Settings
from badgateway.checks.steps import Step
from tests.hypothesis_profiles import active
from tests.lab.fixtures_dns import DnsLab
from tests.lab.fixtures_slack import (
    BOT_USER_ID,
    SIGNING_SECRET,
    BotUnderTest,
    SlackStandIn,
    socket_payload,
)

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
CHANNEL = "C0OPS0001"
ANSWER_WITHIN_S = 3.0
SETTLE_WITHIN_S = 10.0
UNSIGNED_REASON = "invalid or missing Slack signature"
PUBLIC_TARGET = "203.0.113.7"  # TEST-NET-3: public to the guard; the quiet check never dials it


# A check that touches no network: any target the fuzzer finds valid runs a whole diagnosis ----
async def _quiet(ctx: ProbeContext) -> StepResult:
    finding = Finding("quiet_ok", f"looked at {ctx.target.raw}", Status.FAIL)
    return StepResult.from_findings("quiet", f"nothing dialled for {ctx.target.raw}", [finding])


QUIET_STEPS = (Step("quiet", 10, "Quiet check", _quiet),)


@pytest.fixture
def quiet_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (badgateway.checks.steps, badgateway.checks.runner, badgateway.bot.pipeline):
        monkeypatch.setattr(module, "all_steps", lambda: QUIET_STEPS)


# Sending and watching -------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    text: str
    elapsed_s: float
    private: list[str] = field(default_factory=list)  # ephemerals and response_url posts
    public: int = 0  # messages posted or updated in channels

    def summary(self) -> str:
        """One line for Hypothesis' statistics: which paths the inputs reached."""
        reply = f"; private: {self.private[0][:45]}" if self.private else ""
        line = f"{self.status} {self.text[:40]}{reply}; {self.public} public"
        # Statistics are written as UTF-8: a lone surrogate from the input must not break them.
        return line.encode("utf-8", "backslashreplace").decode("utf-8")


def signature_headers(
    body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """Slack's v0 signature over the exact bytes sent."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


_TOKEN = re.compile(r"<([^<>]*)>")


def unescaped_tokens(text: str) -> list[str]:
    """Every ``<…>`` token in ``text`` that is not a mention of a valid id or a date."""
    bad = []
    for token in _TOKEN.findall(text):
        if token.startswith("@") and is_user_id(token[1:]):
            continue
        if token.startswith("#") and is_channel_id(token[1:]):
            continue
        if token.startswith("!date^"):
            continue
        bad.append(token)
    return bad


def shown_in_slack(answer: str) -> str:
    """What Slack shows of an answer: a slash command's ephemeral text. (url_verification's
    challenge is echoed to Slack but never shown; 4xx reasons are the bot's own words.)"""
    try:
        document = json.loads(answer)
    except ValueError:
        return ""
    return str(document.get("text") or "") if isinstance(document, dict) else ""


def _is_traceback(record: logging.LogRecord) -> bool:
    return bool(record.exc_info or record.exc_text or record.stack_info) or (
        "Traceback (most recent call last)" in record.getMessage()
    )


@dataclass
class Surface:
    """The bot under test, the stand-in it posts to, and the logs, checked per input."""

    bot: BotUnderTest
    caplog: pytest.LogCaptureFixture
    root_ts: str = ""  # a real diagnosis thread, for buttons and mentions to act on

    @property
    def slack(self) -> SlackStandIn:
        return self.bot.slack

    async def post(
        self,
        body: bytes,
        content_type: str | None,
        *,
        sign: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        sent = {} if content_type is None else {"Content-Type": content_type}
        if sign:
            sent.update(signature_headers(body))
        sent.update(headers or {})
        started = time.monotonic()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.bot.url, data=body, headers=sent, skip_auto_headers=["Content-Type"]
            ) as response,
        ):
            text = await response.text(errors="replace")
        return Answer(response.status, text, time.monotonic() - started)

    async def post_raw(self, request: bytes, *, hang_up: bool = False) -> Answer:
        """Bytes no HTTP client would send, on a socket; ``hang_up``: close the connection
        right after sending (a body shorter than announced never completes)."""
        url = urlsplit(self.bot.url)
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            writer.write(request)
            await writer.drain()
            if hang_up:
                writer.close()
                return Answer(0, "", time.monotonic() - started)
            head = await asyncio.wait_for(reader.read(), ANSWER_WITHIN_S)
        finally:
            writer.close()
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        status = int(status_line.split()[1])
        return Answer(
            status, head.split(b"\r\n\r\n", 1)[-1].decode("latin-1"), time.monotonic() - started
        )

    async def settle(self, before: set[asyncio.Task[Any]]) -> None:
        """Until the work the request started (Bolt's listener, a diagnosis, a reply) is done."""
        await self.bot.settle()
        deadline = time.monotonic() + SETTLE_WITHIN_S
        current = asyncio.current_task()
        while True:
            pending = [t for t in asyncio.all_tasks() if t not in before and t is not current]
            pending = [t for t in pending if not t.done()]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"work still running {SETTLE_WITHIN_S} s later: {pending}")
            await asyncio.wait(pending, timeout=0.2)
            await self.bot.settle()

    def posted(self, calls_before: int, responses_before: int) -> list[str]:
        """Everything sent to Slack since the marks: texts and blocks, as JSON text."""
        texts = []
        for call in self.slack.calls[calls_before:]:
            if call.method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
                texts.append(str(call.params.get("text") or ""))
                texts.append(json.dumps(call.params.get("blocks") or [], ensure_ascii=False))
        for response in self.slack.responses[responses_before:]:
            texts.append(json.dumps(response, ensure_ascii=False))
        return texts

    async def send(
        self,
        body: bytes,
        content_type: str | None,
        *,
        sign: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Post one input and check every property; returns the answer for more checks."""
        calls, responses = len(self.slack.calls), len(self.slack.responses)
        records = len(self.caplog.records)
        before = set(asyncio.all_tasks())
        answer = await self.post(body, content_type, sign=sign, headers=headers)
        await self.settle(before)
        what = f"{answer.status} {answer.text[:200]!r} for {body[:300]!r}"
        assert answer.status < 500, what
        assert answer.elapsed_s < ANSWER_WITHIN_S, f"answered after {answer.elapsed_s:.2f} s"
        tracebacks = [r for r in self.caplog.records[records:] if _is_traceback(r)]
        assert not tracebacks, [f"{r.name}: {r.getMessage()}" for r in tracebacks]
        if not sign:
            assert answer.status == 401 and answer.text == UNSIGNED_REASON, what
            assert self.slack.calls[calls:] == [], "an unsigned request made the bot act"
        for text in [shown_in_slack(answer.text), *self.posted(calls, responses)]:
            assert unescaped_tokens(text) == [], (unescaped_tokens(text), what)
        new_calls = self.slack.calls[calls:]
        answer.private = [
            str(c.params.get("text")) for c in new_calls if c.method == "chat.postEphemeral"
        ]
        answer.private += [str(r.get("text")) for r in self.slack.responses[responses:]]
        answer.public = sum(c.method in ("chat.postMessage", "chat.update") for c in new_calls)
        return answer


@pytest.fixture(scope="session")
def quiet_settings(dns_lab: DnsLab) -> Settings:
    # Names resolve against the lab's authoritative server (REFUSED for anything but .test):
    # never the system's resolver, and fast.
    return Settings(
        resolvers=(dns_lab.primary,),
        allow_networks=(ipaddress.ip_network("203.0.113.0/24"),),
        timeout_s=2,
        diagnosis_budget_s=5,
    )


@pytest_asyncio.fixture
async def surface(
    slack_bot: Callable[..., Any],
    quiet_steps: None,
    quiet_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Surface]:
    caplog.set_level(logging.INFO)
    bot: BotUnderTest = await slack_bot(quiet_settings)
    surface = Surface(bot, caplog)
    sent = await surface.send(form(slash_fields(bot, PUBLIC_TARGET)), FORM)
    assert (sent.status, sent.text) == (200, "")
    await bot.slack.wait_for(lambda: len(bot.slack.roots()) == 1, what="the root message")
    await bot.settle()
    surface.root_ts = bot.slack.roots()[0].ts
    yield surface


# Bodies as Slack builds them ------------------------------------------------------------------
def form(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


def interaction(payload: Any) -> bytes:
    return form({"payload": json.dumps(payload)})


def slash_fields(bot: BotUnderTest, text: str, **overrides: str) -> dict[str, str]:
    body, _ = bot.signer.slash_command(text)
    return {**socket_payload((body, FORM)), **overrides}


def button_payload(surface: Surface, action_id: str = "bgw_take", **overrides: Any) -> Any:
    built = surface.bot.signer.block_action(
        action_id, surface.root_ts, message_ts=surface.root_ts, thread_ts=surface.root_ts
    )
    return {**socket_payload(built), **overrides}


def mention_body(surface: Surface, text: str = "help", **event_overrides: Any) -> Any:
    built = surface.bot.signer.app_mention(f"<@{BOT_USER_ID}> {text}", thread_ts=surface.root_ts)
    body = socket_payload(built)
    body["event"] = {**body["event"], **event_overrides}
    return body


def without(document: dict[str, Any], *path: str | int) -> dict[str, Any]:
    """A deep copy of ``document`` without the field at ``path``."""
    copied = copy.deepcopy(document)
    parent: Any = copied
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return copied


# Regression corpus: the inputs issue 9 lists -----------------------------------------------------
DIGITS_4301 = "1" * 4301
CORPUS: list[tuple[str, bytes, str | None, int, str]] = [
    # (name, body, content type, status when signed, reason when signed)
    ("not UTF-8", b"\xe8", FORM, 400, "form body: not UTF-8"),
    ("not UTF-8 JSON", b"\xe8", JSON, 400, "JSON body: not UTF-8"),
    ("only a BOM", b"\xef\xbb\xbf", JSON, 400, "JSON body: not JSON (Expecting value)"),
    ("empty list", b"[]", JSON, 400, "JSON body: expected a JSON object"),
    ("nested 1000 deep", b"[" * 1000, JSON, 400, "JSON body: nested deeper than 64 levels"),
    (
        "payload= 4301-digit number",
        form({"payload": DIGITS_4301}),
        FORM,
        400,
        "payload: a number longer than 100 digits",
    ),
    (
        "payload= object with a 4301-digit number",
        form({"payload": f'{{"type": "block_actions", "n": {DIGITS_4301}}}'}),
        FORM,
        400,
        "payload: a number longer than 100 digits",
    ),
    (
        "JSON with charset=nope",
        b'{"type": "url_verification", "challenge": "x"}',
        "application/json; charset=nope",
        415,
        "charset must be utf-8",
    ),
    (
        'payload={"user":0}',
        form({"payload": '{"user":0}'}),
        FORM,
        400,
        "user is neither an id nor an object",
    ),
    ("no content type", b'{"type": "url_verification"}', None, 415, f"expected {FORM} or {JSON}"),
    (
        "a field twice",
        b"command=%2F502&command=%2F503",
        FORM,
        400,
        "form body: a field is given twice",
    ),
    (
        "percent-escaped non-UTF-8",
        b"command=%2F502&text=%E8",
        FORM,
        400,
        "form body: not UTF-8",
    ),
    (
        "event that is a list",
        b'{"type": "event_callback", "event": []}',
        JSON,
        400,
        "event is not an object",
    ),
    (
        "authorizations of numbers",
        b'{"type": "event_callback", "authorizations": [1]}',
        JSON,
        400,
        "authorizations is not a list of objects",
    ),
    (
        "challenge that is an object",
        b'{"type": "url_verification", "challenge": {"a": 1}}',
        JSON,
        400,
        "challenge is missing or not text",
    ),
    # Found by the properties below: shapes Bolt's own paths index unchecked.
    (
        "null event",
        b'{"type": "event_callback", "event": null}',
        JSON,
        400,
        "event is not an object",
    ),
    ("empty object", b"{}", JSON, 400, "not a request this app handles"),
    (
        "block_suggestion with a numeric action_id",
        b'{"type": "block_suggestion", "action_id": 5}',
        JSON,
        400,
        "action_id is missing or not text",  # the app answers menus (a grouped alert's)
    ),
    (
        "another app's menu",
        b'{"type": "block_suggestion", "action_id": "other"}',
        JSON,
        200,
        "",
    ),
    ("command without a slash", form({"command": "502"}), FORM, 400, "not a slash command"),
    (
        "another app's button",
        interaction({"type": "block_actions", "actions": [{"action_id": "other"}]}),
        FORM,
        200,
        "",
    ),
    (
        "an event the app does not subscribe to",
        b'{"type": "event_callback", "event": {"type": "message"}}',
        JSON,
        200,
        "",
    ),
    ("ssl_check", b"ssl_check=1&token=x", FORM, 200, ""),
]


def _corpus_ids() -> list[str]:
    return [case[0] for case in CORPUS]


@pytest.mark.parametrize(
    ("name", "body", "content_type", "_status", "_reason"), CORPUS, ids=_corpus_ids()
)
async def test_corpus_unsigned_is_401_before_anything_is_read(
    surface: Surface, name: str, body: bytes, content_type: str | None, _status: int, _reason: str
) -> None:
    answer = await surface.send(body, content_type, sign=False)
    assert answer.status == 401


@pytest.mark.parametrize(
    ("name", "body", "content_type", "status", "reason"), CORPUS, ids=_corpus_ids()
)
async def test_corpus_signed_gets_its_status_and_reason(
    surface: Surface, name: str, body: bytes, content_type: str | None, status: int, reason: str
) -> None:
    answer = await surface.send(body, content_type)
    assert (answer.status, answer.text) == (status, reason)


@pytest.mark.parametrize(
    "headers",
    [  # made when the test runs: a timestamp is only stale relative to then
        pytest.param(lambda: {"X-Slack-Signature": "v0=" + "0" * 64}, id="forged"),
        pytest.param(lambda: {"X-Slack-Request-Timestamp": "1" * 4301}, id="4301-digit timestamp"),
        pytest.param(lambda: {"X-Slack-Request-Timestamp": "١٢٣"}, id="non-ASCII digits"),
        pytest.param(lambda: {"X-Slack-Signature": "v0=é"}, id="non-ASCII signature"),
        pytest.param(
            lambda: signature_headers(b"x", timestamp=int(time.time()) - 6 * 60), id="stale"
        ),
        pytest.param(
            lambda: signature_headers(b"x", timestamp=int(time.time()) + 6 * 60), id="future"
        ),
        pytest.param(lambda: signature_headers(b"x", secret="not-the-secret"), id="other secret"),
        pytest.param(lambda: signature_headers(b"y"), id="other body"),
    ],
)
async def test_forged_stale_and_odd_signatures_are_401(
    surface: Surface, headers: Callable[[], dict[str, str]]
) -> None:
    await surface.send(b"x", FORM, sign=False, headers=headers())


def _raw_request(headers: bytes, body: bytes = b"") -> bytes:
    return (
        b"POST /slack/events HTTP/1.1\r\nHost: bot\r\n"
        + headers
        + b"Connection: close\r\n\r\n"
        + body
    )


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(
            _raw_request(b"X-Slack-Signature: " + b"a" * 9000 + b"\r\nContent-Length: 0\r\n"),
            400,
            id="header over 8 KiB",
        ),
        pytest.param(
            _raw_request(b"".join(b"X-A%d: b\r\n" % i for i in range(200))),
            400,
            id="200 headers",
        ),
        pytest.param(
            _raw_request(b"Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"),
            400,
            id="broken chunking",
        ),
        pytest.param(
            _raw_request(
                b"X-Slack-Signature: v0=\xe8\r\nX-Slack-Request-Timestamp: 1\r\n"
                b"Content-Length: 1\r\n",
                b"x",
            ),
            401,
            id="signature with a non-UTF-8 byte",
        ),
    ],
)
async def test_requests_aiohttp_cannot_parse_are_4xx_in_one_log_line(
    surface: Surface, request_bytes: bytes, status: int
) -> None:
    records, calls = len(surface.caplog.records), len(surface.slack.calls)
    answer = await surface.post_raw(request_bytes)
    await asyncio.sleep(0.1)  # aiohttp logs after answering
    assert answer.status == status
    logged = surface.caplog.records[records:]
    assert not [r for r in logged if _is_traceback(r)], [r.getMessage() for r in logged]
    if status == 400:
        assert any("refused a malformed HTTP request" in r.getMessage() for r in logged)
    assert surface.slack.calls[calls:] == []


async def test_a_client_that_hangs_up_mid_body_leaves_no_traceback(surface: Surface) -> None:
    records = len(surface.caplog.records)
    await surface.post_raw(_raw_request(b"Content-Length: 100\r\n", b"abc"), hang_up=True)
    await asyncio.sleep(0.3)
    logged = surface.caplog.records[records:]
    assert not [r for r in logged if _is_traceback(r)], [r.getMessage() for r in logged]
    assert not [r for r in logged if '" 500 ' in r.getMessage()]


async def test_a_body_over_the_limit_is_413(surface: Surface) -> None:
    answer = await surface.send(b"x" * (1024 * 1024 + 1), FORM)
    assert (answer.status, answer.text) == (413, "body larger than 1048576 bytes")


async def test_bolt_internal_headers_do_not_reach_bolt(surface: Surface) -> None:
    # X-Slack-Bolt-Lazy-Only makes Bolt skip the listener and wait out its 3 s for an ack.
    body = form(slash_fields(surface.bot, "help"))
    answer = await surface.send(body, FORM, headers={"X-Slack-Bolt-Lazy-Only": "1"})
    assert answer.status == 200 and "/502" in json.loads(answer.text)["text"]
    assert answer.elapsed_s < 1.0


# Signed payloads that Slack would never send: answered, never a crash after the ack -----------
@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        pytest.param({"actions": []}, "actions is empty", id='"actions":[]'),
        pytest.param({"actions": [{}]}, "actions[0] has no action_id", id='"actions":[{}]'),
        pytest.param({"actions": None}, "actions is missing or not a list", id='"actions":null'),
        pytest.param({"user": 0}, "user is neither an id nor an object", id='"user":0'),
        pytest.param({"event": []}, "event is not an object", id='"event":[]'),
    ],
)
async def test_unroutable_button_gets_an_empty_200_and_a_private_reason(
    surface: Surface, overrides: dict[str, Any], reason: str
) -> None:
    before = len(surface.slack.responses)
    answer = await surface.send(interaction(button_payload(surface, **overrides)), FORM)
    assert (answer.status, answer.text) == (200, "")
    assert len(surface.slack.responses) == before + 1
    reply = surface.slack.responses[-1]
    assert reply["response_type"] == "ephemeral"
    assert reply["text"] == f"⚠️ badgateway could not read this button press: {reason}."


async def test_button_without_user_is_answered_privately(surface: Surface) -> None:
    payload = without(button_payload(surface), "user")
    answer = await surface.send(interaction(payload), FORM)
    assert (answer.status, answer.text) == (200, "")
    reply = surface.slack.responses[-1]
    assert reply["text"].endswith("user is missing or not an object.")


async def test_button_whose_response_url_is_not_a_url_answers_by_ephemeral(
    surface: Surface,
) -> None:
    messages = len(surface.slack.messages)
    for bad_url in (
        "not a url",
        "http://]/",
        "//[::1",
        "ftp://x/",
        "http://hooks.slack.com/x",
        "https://elsewhere.example/",
        "https://hooks.slack.com.elsewhere.example/",
    ):
        payload = button_payload(surface, response_url=bad_url)
        answer = await surface.send(interaction(payload), FORM)
        assert (answer.status, answer.text) == (200, "")
        ephemeral = surface.slack.ephemerals[-1]
        assert ephemeral["user"] == "U0ALICE01" and ephemeral["channel"] == CHANNEL
        assert "could not read this button press: response_url is not" in ephemeral["text"]
    assert len(surface.slack.messages) == messages  # nothing was done to the thread


async def test_button_with_here_as_user_id_posts_no_here(surface: Surface) -> None:
    # Issue 9: a user.id of <!here> had the bot post <!here> in the thread and the root.
    root_before = str(surface.slack.message(surface.root_ts).blocks)
    messages = len(surface.slack.messages)
    for action in ("bgw_take", "bgw_resolve", "bgw_rerun", "bgw_escalate"):
        payload = button_payload(surface, action)
        payload["user"]["id"] = "<!here>"
        answer = await surface.send(interaction(payload), FORM)
        assert (answer.status, answer.text) == (200, "")
        assert surface.slack.responses[-1]["text"].endswith("user.id is not a Slack user id.")
    assert len(surface.slack.messages) == messages
    assert str(surface.slack.message(surface.root_ts).blocks) == root_before
    assert all("<!here>" not in str(m.blocks) + m.text for m in surface.slack.messages)


async def test_a_valid_button_still_works(surface: Surface) -> None:
    answer = await surface.send(interaction(button_payload(surface, "bgw_take")), FORM)
    assert answer.status == 200
    assert "<@U0ALICE01> is on it" in str(surface.slack.message(surface.root_ts).blocks)
    notes = [m.text for m in surface.slack.thread(surface.root_ts)]
    assert "🙋 <@U0ALICE01> is on it." in notes


async def test_app_mention_without_ts_is_acknowledged_and_answered_privately(
    surface: Surface,
) -> None:
    body = without(mention_body(surface), "event", "ts")
    messages = len(surface.slack.messages)
    answer = await surface.send(json.dumps(body).encode(), JSON)
    assert answer.status == 200
    assert (
        "could not read this mention: ts is not a Slack message timestamp"
        in (surface.slack.ephemerals[-1]["text"])
    )
    assert len(surface.slack.messages) == messages


async def test_slash_command_from_a_user_id_that_is_not_one(surface: Surface) -> None:
    body = form(slash_fields(surface.bot, PUBLIC_TARGET, user_id="<!here>"))
    roots = len(surface.slack.roots())
    answer = await surface.send(body, FORM)
    assert answer.status == 200
    assert json.loads(answer.text) == {
        "text": "⚠️ badgateway could not read this command: user_id is not a Slack user id.",
        "response_type": "ephemeral",
    }
    assert len(surface.slack.roots()) == roots


async def test_a_command_whose_text_says_payload_is_still_a_command(surface: Surface) -> None:
    # Bolt's own form parser took any body containing "payload" for an interaction.
    answer = await surface.send(form(slash_fields(surface.bot, "payload.example.com")), FORM)
    assert (answer.status, answer.text) == (200, "")
    assert "payload.example.com" in surface.slack.roots()[-1].text


async def test_event_without_a_type_is_400(surface: Surface) -> None:
    body = mention_body(surface)
    del body["event"]["type"]
    answer = await surface.send(json.dumps(body).encode(), JSON)
    assert (answer.status, answer.text) == (400, "event has no type")


# Property-based: Hypothesis' own inputs ----------------------------------------------------------
HOSTILE_TEXTS = [
    "<!here>",
    "<!channel>",
    "<!everyone>",
    "<!subteam^S0ONCALL1>",
    "<@U0ALICE01>",
    "<#C0OPS0001>",
    "<https://evil.example|click>",
    "U0ALICE01\n",
    "U0alice01",
    "",
    " ",
    "\x00",
    "\ud800",
    "http://]/",
    "//[::1",
    "https://",
    "https://hooks.slack.com.evil.example/actions/T0/1/x",
    "https://127.0.0.1:1/actions/T0/1/x",
    "javascript:alert(1)",
    "1700000000.000001",
    "1.2.3",
    "bgw_take",
    "bgw_<!here>",
    PUBLIC_TARGET,
    "127.0.0.1",
    "help",
    "status",
    "sites",
    "rerun",
    "rerun <!here>",
    "x" * 5000,
    "١٢٣",
    DIGITS_4301,
]
SLACK_KEYS = [
    "type",
    "user",
    "id",
    "channel",
    "team",
    "enterprise",
    "authorizations",
    "event",
    "actions",
    "action_id",
    "value",
    "message",
    "ts",
    "thread_ts",
    "response_url",
    "response_urls",
    "text",
    "challenge",
    "command",
    "callback_id",
    "event_id",
    "container",
    "view",
    "item",
    "is_ext_shared_channel",
    "user_id",
    "channel_id",
]
KINDS = ["block_actions", "event_callback", "url_verification", "app_mention", "ssl_check", "x"]


def _hostile(index: int) -> str:
    return HOSTILE_TEXTS[index]  # drawn by index: Hypothesis' statistics show a short repr


hostile_text = st.one_of(
    st.integers(0, len(HOSTILE_TEXTS) - 1).map(_hostile),
    st.text(max_size=30),
    st.from_regex(r"[UWBCGD][A-Z0-9]{1,12}", fullmatch=True),
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    hostile_text,
    st.sampled_from(KINDS),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(SLACK_KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=12,
)
# A field's new value: mostly text Slack could carry (ids, URLs, tokens), sometimes any JSON.
field_values = st.one_of(hostile_text, hostile_text, json_value)
content_types = st.sampled_from(
    [
        FORM,
        JSON,
        "application/json; charset=utf-8",
        "application/json; charset=nope",
        "application/x-www-form-urlencoded; charset=latin-1",
        "text/plain",
        "multipart/form-data; boundary=x",
        ";",
        "",
        None,
    ]
)


def _mutate(document: Any, path: tuple[Any, ...], value: Any, delete: bool) -> None:
    """Replace (or delete) the field at ``path`` when the way there still exists."""
    parent = document
    for step in path[:-1]:
        if isinstance(parent, dict) and step in parent:
            parent = parent[step]
        elif isinstance(parent, list) and isinstance(step, int) and step < len(parent):
            parent = parent[step]
        else:
            return
    last = path[-1]
    if isinstance(parent, dict):
        if delete:
            parent.pop(last, None)
        else:
            parent[last] = value
    elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
        if delete:
            del parent[last]
        else:
            parent[last] = value


def mutated(
    draw: Callable[[st.SearchStrategy[Any]], Any],
    document: Any,
    paths: list[tuple[Any, ...]],
    values: st.SearchStrategy[Any],
) -> Any:
    document = copy.deepcopy(document)
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True)):
        _mutate(document, path, draw(values), draw(st.booleans()))
    return document


BUTTON_PATHS: list[tuple[Any, ...]] = [
    ("type",),
    ("user",),
    ("user", "id"),
    ("channel",),
    ("channel", "id"),
    ("channel", "name"),
    ("team",),
    ("enterprise",),
    ("container",),
    ("actions",),
    ("actions", 0),
    ("actions", 0, "action_id"),
    ("actions", 0, "value"),
    ("message",),
    ("message", "ts"),
    ("message", "thread_ts"),
    ("response_url",),
    ("authorizations",),
    ("response_urls",),
]
MENTION_PATHS: list[tuple[Any, ...]] = [
    ("type",),
    ("event_id",),
    ("event",),
    ("event", "type"),
    ("event", "user"),
    ("event", "channel"),
    ("event", "ts"),
    ("event", "thread_ts"),
    ("event", "text"),
    ("authorizations",),
    ("authorizations", 0),
    ("authorizations", 0, "user_id"),
    ("is_ext_shared_channel",),
    ("team_id",),
]
SLASH_FIELDS = ["user_id", "channel_id", "channel_name", "text", "command", "response_url"]


@active()
@given(body=st.binary(max_size=300) | json_value.map(lambda v: json.dumps(v).encode()))
@example(body=b"\xe8")
async def test_unsigned_anything_is_401(surface: Surface, body: bytes) -> None:
    answer = await surface.send(body, JSON, sign=False)
    event(answer.summary())


@active()
@given(
    body=st.binary(max_size=300)
    | json_value.map(lambda v: json.dumps(v).encode())
    | json_value.map(lambda v: form({"payload": json.dumps(v)})),
    content_type=content_types,
)
async def test_signed_bytes_never_5xx(
    surface: Surface, body: bytes, content_type: str | None
) -> None:
    answer = await surface.send(body, content_type)
    event(answer.summary())
    assert answer.status in (200, 400, 413, 415)


@active()
@given(data=st.data())
async def test_slash_commands(surface: Surface, data: st.DataObject) -> None:
    # A form carries UTF-8: a lone surrogate cannot be sent, its replacement can.
    form_text = hostile_text.map(
        lambda text: text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    )
    fields = slash_fields(surface.bot, data.draw(form_text, label="text"))
    for name in data.draw(st.lists(st.sampled_from(SLASH_FIELDS), max_size=3, unique=True)):
        if data.draw(st.booleans(), label=f"drop {name}"):
            fields.pop(name, None)
        else:
            fields[name] = data.draw(form_text, label=name)
    answer = await surface.send(form(fields), FORM)
    event(answer.summary())
    assert answer.status in (200, 400)  # 400: not a slash command (no command field)


@active()
@given(data=st.data())
async def test_button_presses(surface: Surface, data: st.DataObject) -> None:
    action_id = data.draw(
        st.sampled_from(["bgw_rerun", "bgw_take", "bgw_escalate", "bgw_resolve", "bgw_x"]),
        label="action_id",
    )
    payload = mutated(data.draw, button_payload(surface, action_id), BUTTON_PATHS, field_values)
    answer = await surface.send(interaction(payload), FORM)
    event(answer.summary())
    assert answer.status in (200, 400)


@active()
@given(data=st.data())
async def test_events(surface: Surface, data: st.DataObject) -> None:
    text = data.draw(hostile_text, label="mention text")
    template = data.draw(
        st.sampled_from(
            [
                mention_body(surface, text),
                mention_body(surface, f"rerun {text}"),
                {"type": "url_verification", "challenge": text, "token": "t"},
            ]
        ),
        label="template",
    )
    body = mutated(data.draw, template, [*MENTION_PATHS, ("challenge",)], field_values)
    answer = await surface.send(json.dumps(body).encode(), JSON)
    event(answer.summary())
    assert answer.status in (200, 400)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/actions/T0BGW0001/1/abc",
        "https://hooks.slack-gov.com/commands/T0BGW0001/1/abc",
        "http://127.0.0.1:8123/response/abc",  # the stand-in's origin, SLACK_API_URL's
    ],
)
def test_response_url_accepts_slacks_and_the_stand_ins(url: str) -> None:
    assert payloads.response_url(url, stand_in="http://127.0.0.1:8123/api/") == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        7,
        "",
        "hooks.slack.com/x",
        "http://hooks.slack.com/x",
        "https://hooks.slack.com.evil.example/x",
        "https://evilslack.com/x",
        "https://user:pw@hooks.slack.com/x",
        "https://hooks.slack.com/x y",
        "https://hooks.slack.com/\x00",
        "https://hooks.slack.com:99999/x",
        "https://hoöks.slack.com/x",
        "http://]/",
        "//[::1",
        "http://127.0.0.1:8124/response/abc",  # another port than the stand-in's
    ],
)
def test_response_url_refuses_anything_else(url: object) -> None:
    with pytest.raises(payloads.PayloadProblem, match=r"^response_url is"):
        payloads.response_url(url, stand_in="http://127.0.0.1:8123/api/")


def test_mentions_are_built_from_ids_only() -> None:
    assert user_mention("U0ALICE01") == "<@U0ALICE01>"
    assert user_mention("W0GRID001") == "<@W0GRID001>"
    assert channel_mention("G0PRIVATE") == "<#G0PRIVATE>"
    for forged in ("<!here>", "U0ALICE01\n", "u0alice01", "U", "<@U0ALICE01>", "U0-1", ""):
        assert unescaped_tokens(user_mention(forged)) == [], forged
        assert not user_mention(forged).startswith("<@"), forged
    assert user_mention("<!here>") == "&lt;!here&gt;"
    assert channel_mention("<!channel>") == "&lt;!channel&gt;"


def test_hostile_token_check_catches_what_it_must() -> None:
    # The property's own check, on texts it must and must not flag.
    assert unescaped_tokens("hi <!here> and <@U0ALICE01>") == ["!here"]
    assert unescaped_tokens("<@<!here>>") != []
    assert unescaped_tokens("<@U0ALICE01> at <!date^1^{time}|x> in <#C0OPS0001>") == []
    assert unescaped_tokens("&lt;!here&gt;") == []
